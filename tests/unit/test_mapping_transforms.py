"""Every transform, table-driven; ordering, fallbacks and unmapped fields."""

from __future__ import annotations

from typing import Any

import pytest

from shared.mapping import (
    LEAD_FIELDS,
    TRANSFORMS,
    FormError,
    MappingEntry,
    compile_mapping,
    map_and_validate,
    parse_form,
    parse_mapping,
    resolve_path,
)

pytestmark = pytest.mark.unit

EMAIL = {"source": "email", "target": "email"}


def run(entries: list[dict[str, Any]], payload: Any, region: str = "US", **kw: Any):
    mapping = parse_mapping({"entries": entries, **kw})
    return map_and_validate(payload, compile_mapping(mapping), default_region=region)


def custom_value(entry: dict[str, Any], raw: Any) -> tuple[Any, list[str]]:
    """The value an entry writes to custom.out, and the error codes."""
    lead, errors = run([EMAIL, {**entry, "target": "custom.out"}], {"email": "a@b.co", "v": raw})
    return lead.custom.get("out"), [e.code for e in errors]


@pytest.mark.parametrize(
    ("entry", "raw", "expected"),
    [
        ({"source": "v", "transform": "direct"}, "Bath Remodel", "Bath Remodel"),
        ({"source": "v", "transform": "direct"}, 42, 42),
        ({"source": "v", "transform": "direct"}, {"a": 1}, {"a": 1}),
        ({"source": "v", "transform": "lowercase"}, "MiXeD", "mixed"),
        ({"source": "v", "transform": "lowercase"}, 12, "12"),
        ({"source": "v", "transform": "uppercase"}, "ca", "CA"),
        ({"source": "v", "transform": "trim"}, "  two   words \t", "two words"),
        ({"source": "v", "transform": "digits"}, "(626) 663-3444", "6266633444"),
        ({"source": "v", "transform": "digits"}, 91101, "91101"),
        ({"source": "v", "transform": "e164"}, "(626) 663-3444", "+16266633444"),
        ({"source": "v", "transform": "e164", "format": "GB"}, "020 7946 0958", "+442079460958"),
        ({"source": "v", "transform": "date"}, "2024-05-01", "2024-05-01"),
        ({"source": "v", "transform": "date"}, "05/01/2024", "2024-05-01"),
        (
            {"source": "v", "transform": "date"},
            "2024-05-01T12:00:00+0000",
            "2024-05-01T12:00:00+00:00",
        ),
        (
            {"source": "v", "transform": "date"},
            "2024-05-01T14:00:00+02:00",
            "2024-05-01T12:00:00+00:00",
        ),
        ({"source": "v", "transform": "date"}, "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
        ({"source": "v", "transform": "date"}, 1714564800, "2024-05-01T12:00:00+00:00"),
        ({"source": "v", "transform": "date"}, 1714564800000, "2024-05-01T12:00:00+00:00"),
        ({"source": "v", "transform": "date", "format": "%d.%m.%Y"}, "01.05.2024", "2024-05-01"),
        ({"source": "v", "transform": "boolean"}, "Yes", True),
        ({"source": "v", "transform": "boolean"}, "no", False),
        ({"source": "v", "transform": "boolean"}, "1", True),
        ({"source": "v", "transform": "boolean"}, 0, False),
        ({"source": "v", "transform": "boolean"}, True, True),
        ({"source": "v", "transform": "boolean"}, "off", False),
        ({"source": None, "transform": "constant", "value": "facebook"}, "ignored", "facebook"),
        ({"source": "v", "transform": "default", "value": "none given"}, "", "none given"),
        ({"source": "v", "transform": "default", "value": "none given"}, "sent", "sent"),
        ({"source": "missing", "transform": "default", "value": 7}, "x", 7),
    ],
)
def test_transform(entry: dict[str, Any], raw: Any, expected: Any) -> None:
    entry = {k: v for k, v in entry.items() if v is not None}
    value, errors = custom_value(entry, raw)
    assert errors == []
    assert value == expected


@pytest.mark.parametrize(
    ("entry", "raw", "code"),
    [
        ({"source": "v", "transform": "boolean"}, "maybe", "invalid_boolean"),
        ({"source": "v", "transform": "boolean"}, 2, "invalid_boolean"),
        ({"source": "v", "transform": "date"}, "not a date", "invalid_date"),
        ({"source": "v", "transform": "date"}, "2024-13-45", "invalid_date"),
        ({"source": "v", "transform": "date"}, True, "invalid_date"),
        ({"source": "v", "transform": "date", "format": "%d.%m.%Y"}, "2024-05-01", "invalid_date"),
        ({"source": "v", "transform": "e164"}, "12", "invalid_phone"),
        ({"source": "v", "transform": "lowercase"}, ["a"], "invalid_type"),
        ({"source": "v", "transform": "digits"}, {"a": 1}, "invalid_type"),
    ],
)
def test_transform_errors(entry: dict[str, Any], raw: Any, code: str) -> None:
    value, errors = custom_value(entry, raw)
    assert value is None
    assert errors == [code]


def test_error_messages_never_echo_the_value() -> None:
    secret = "Sensitive-Value-9876"
    _, errors = run(
        [
            {"source": "p", "target": "phone"},
            {"source": "e", "target": "email"},
            {"source": "d", "target": "custom.d", "transform": "date"},
            {"source": "b", "target": "custom.b", "transform": "boolean"},
        ],
        {"p": secret, "e": secret, "d": secret, "b": secret},
    )
    assert {e.code for e in errors} == {
        "invalid_phone",
        "invalid_email",
        "invalid_date",
        "invalid_boolean",
    }
    for err in errors:
        assert secret not in err.message
        assert secret.lower() not in err.message.lower()


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Benjie Malinao", "Benjie", "Malinao"),
        ("  Mary   Ann Smith ", "Mary", "Ann Smith"),
        ("Cher", "Cher", None),
        ("Malinao, Benjie", "Benjie", "Malinao"),
    ],
)
def test_split_name(full: str, first: str, last: str | None) -> None:
    lead, errors = run(
        [EMAIL, {"source": "name", "target": "name", "transform": "split_name"}],
        {"email": "a@b.co", "name": full},
    )
    assert errors == []
    assert (lead.first_name, lead.last_name) == (first, last)


def test_split_name_does_not_override_an_earlier_first_name() -> None:
    lead, _ = run(
        [
            EMAIL,
            {"source": "first", "target": "first_name"},
            {"source": "full", "target": "first_name", "transform": "split_name"},
        ],
        {"email": "a@b.co", "first": "Ben", "full": "Benjamin Malinao"},
    )
    assert (lead.first_name, lead.last_name) == ("Ben", "Malinao")


def test_first_entry_with_a_value_wins_and_later_ones_are_fallbacks() -> None:
    entries = [
        {"source": "phone_1", "target": "phone"},
        {"source": "phone_2", "target": "phone"},
    ]
    lead, _ = run(entries, {"phone_1": "", "phone_2": "626-663-3444"})
    assert lead.phone == "+16266633444"
    # The fallback that lost is not consumed: it stays as a custom field.
    lead, _ = run(entries, {"phone_1": "626-663-3444", "phone_2": "212-555-0100"})
    assert lead.phone == "+16266633444"
    assert lead.custom == {"phone_2": "212-555-0100"}


def test_unmapped_fields_land_in_custom() -> None:
    lead, errors = run(
        [EMAIL, {"source": "contact.first", "target": "first_name"}],
        {"email": "a@b.co", "zip": "91101", "tags": ["a"], "contact": {"first": "Ben", "age": 40}},
    )
    assert errors == []
    assert lead.first_name == "Ben"
    assert lead.custom == {"zip": "91101", "tags": ["a"], "contact": {"age": 40}}


def test_keep_unmapped_false_drops_them() -> None:
    lead, _ = run([EMAIL], {"email": "a@b.co", "zip": "91101"}, keep_unmapped=False)
    assert lead.custom == {}


def test_mapped_custom_target_wins_over_an_unmapped_field_of_the_same_name() -> None:
    lead, _ = run(
        [EMAIL, {"source": "src", "target": "custom.zip"}],
        {"email": "a@b.co", "zip": "unmapped", "src": "mapped"},
    )
    assert lead.custom["zip"] == "mapped"


def test_field_data_selector_path() -> None:
    payload = {
        "field_data": [
            {"name": "email", "values": ["Ben@Example.com"]},
            {"name": "question", "values": ["yes"]},
        ]
    }
    lead, errors = run([{"source": "field_data[name=email].values.0", "target": "email"}], payload)
    assert errors == []
    assert lead.email == "ben@example.com"
    # The picked element is consumed; the rest of the list is kept.
    assert lead.custom == {"field_data": [{"name": "question", "values": ["yes"]}]}


@pytest.mark.parametrize(
    ("payload", "path", "expected"),
    [
        ({"a": {"b": {"c": 1}}}, "a.b.c", 1),
        ({"a": [{"b": 1}, {"b": 2}]}, "a.1.b", 2),
        ({"a": {"0": "zero"}}, "a.0", "zero"),
        ({"a.b": "flat"}, "a.b", "flat"),
        ({"lead[email]": "x@y.z"}, "lead[email]", "x@y.z"),
        ({"a": {"b.c": 3}}, "a.b\\.c", 3),
        ({"l": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]}, "l[k=y].v", 2),
        ({"l": [{"k": "x"}]}, "l[k=z].v", None),
        ({"a": "text"}, "a.b", None),
        ({"a": [1]}, "a.5", None),
    ],
)
def test_paths(payload: dict[str, Any], path: str, expected: Any) -> None:
    assert resolve_path(payload, path) == expected


def test_lead_text_fields_are_normalized_and_bounded() -> None:
    lead, errors = run(
        [
            EMAIL,
            {"source": "id", "target": "crm_id"},
            {"source": "p", "target": "product"},
            {"source": "f", "target": "first_name"},
        ],
        {"email": "a@b.co", "id": 12345, "p": "  Bath   Remodel ", "f": "x" * 201},
    )
    assert lead.crm_id == "12345"
    assert lead.product == "Bath Remodel"
    assert lead.first_name is None
    assert [(e.field, e.code) for e in errors] == [("first_name", "too_long")]


def test_object_in_a_text_field_is_invalid_type() -> None:
    lead, errors = run(
        [EMAIL, {"source": "p", "target": "product"}], {"email": "a@b.co", "p": {"x": 1}}
    )
    assert lead.product is None
    assert [(e.field, e.code) for e in errors] == [("product", "invalid_type")]


def test_phone_or_email_is_required() -> None:
    _, errors = run([{"source": "f", "target": "first_name"}], {"f": "Ben"})
    assert [(e.field, e.code) for e in errors] == [("phone", "required")]
    _, errors = run([{"source": "phone", "target": "phone"}], {"phone": "   "})
    assert [e.code for e in errors] == ["required"]


def test_custom_values_are_bounded() -> None:
    lead, errors = run([EMAIL], {"email": "a@b.co", "notes": "x" * 10_001, "ok": "fine"})
    assert [(e.field, e.code) for e in errors] == [("custom.notes", "too_long")]
    assert lead.custom == {"ok": "fine"}
    deep: Any = "leaf"
    for _ in range(20):
        deep = {"d": deep}
    _, errors = run([EMAIL], {"email": "a@b.co", "deep": deep})
    assert [(e.field, e.code) for e in errors] == [("custom.deep", "too_long")]
    _, errors = run([EMAIL], {"email": "a@b.co", **{f"k{i}": i for i in range(501)}})
    assert [(e.field, e.code) for e in errors] == [("custom", "too_long")]


def test_a_body_that_is_not_an_object() -> None:
    _, errors = run([EMAIL], ["a", "list"])
    assert errors[0].field == "body"
    assert errors[0].code == "invalid_type"


def test_transform_and_lead_field_lists() -> None:
    assert set(TRANSFORMS) == {
        "direct",
        "lowercase",
        "uppercase",
        "trim",
        "e164",
        "digits",
        "date",
        "boolean",
        "split_name",
        "constant",
        "default",
    }
    assert set(LEAD_FIELDS) == {
        "crm_id",
        "phone",
        "email",
        "first_name",
        "last_name",
        "product",
        "lead_status",
    }
    assert MappingEntry(source="a", target="email").transform == "direct"


def test_parse_form() -> None:
    assert parse_form(b"first_name=Ben&tag=a&tag=b&empty=&e=a%40b.co&sp=two+words") == {
        "first_name": "Ben",
        "tag": ["a", "b"],
        "empty": "",
        "e": "a@b.co",
        "sp": "two words",
    }
    assert parse_form(b"") == {}
    # Bytes that are not UTF-8, raw or %-escaped, are refused (nothing is guessed).
    for body in (b"\xff\xfe=1", b"a=%FF", b"a=%ED%A0%80"):
        with pytest.raises(FormError) as refused:
            parse_form(body)
        assert refused.value.code == "invalid_utf8"
    with pytest.raises(FormError) as refused:
        parse_form(b"&".join(b"k%d=1" % i for i in range(1001)))
    assert refused.value.code == "too_many_fields"


def test_form_body_maps_like_json() -> None:
    lead, errors = run(
        [{"source": "email", "target": "email"}, {"source": "phone", "target": "phone"}],
        parse_form(b"email=Ben%40Example.com&phone=%28626%29+663-3444&zip=91101"),
    )
    assert errors == []
    assert (lead.email, lead.phone, lead.custom) == (
        "ben@example.com",
        "+16266633444",
        {"zip": "91101"},
    )
