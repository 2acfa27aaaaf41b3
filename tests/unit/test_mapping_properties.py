"""Property tests: mapping never raises on any JSON-like body; normalizers raise only ValueError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import MappedLead
from shared.mapping import (
    compile_mapping,
    compile_path,
    map_and_validate,
    normalize_email,
    normalize_phone,
    parse_form,
    parse_mapping,
)
from shared.templates import TEMPLATES

pytestmark = pytest.mark.unit

KEYS = st.sampled_from(
    [
        "email",
        "phone",
        "phone_1",
        "phone_number",
        "first_name",
        "name",
        "full_name",
        "field_data",
        "values",
        "id",
        "lead",
        "0",
        "d",
        "b",
        "x",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        ["+16266633444", "(626) 663-3444 x9", "a@b.co", "A@B", "2024-05-01", "yes", "Ben Mal"]
    )
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)

EVERYTHING = compile_mapping(
    parse_mapping(
        [
            {"source": "phone", "target": "phone", "transform": "e164"},
            {"source": "phone_1", "target": "phone"},
            {"source": "email", "target": "email", "transform": "lowercase"},
            {"source": "field_data[name=email].values.0", "target": "email"},
            {"source": "name", "target": "name", "transform": "split_name"},
            {"source": "first_name", "target": "first_name", "transform": "trim"},
            {"source": "id", "target": "crm_id", "transform": "digits"},
            {"source": "d", "target": "custom.d", "transform": "date"},
            {"source": "b", "target": "custom.b", "transform": "boolean"},
            {"source": "x", "target": "product", "transform": "uppercase"},
            {"source": "lead.0.x", "target": "lead_status", "transform": "default", "value": "new"},
            {"target": "custom.k", "transform": "constant", "value": 1},
        ]
    )
)
COMPILED = [EVERYTHING, *(compile_mapping(t.mapping) for t in TEMPLATES.values())]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    payload=JSON,
    which=st.integers(0, len(COMPILED) - 1),
    region=st.sampled_from(["US", "GB", "ZZ", ""]),
)
def test_map_and_validate_never_raises(payload: Any, which: int, region: str) -> None:
    lead, errors = map_and_validate(payload, COMPILED[which], default_region=region)
    assert isinstance(lead, MappedLead)
    lead.model_dump_json()  # always serializable
    for err in errors:
        assert err.code and err.field and err.message


@FAST
@given(
    raw=st.one_of(st.text(max_size=80), st.integers(), st.none(), st.floats(), st.lists(st.text())),
    region=st.text(max_size=3),
)
def test_normalize_phone_raises_only_value_error(raw: Any, region: str) -> None:
    try:
        out = normalize_phone(raw, region)
    except ValueError:
        return
    assert out.startswith("+")


@FAST
@given(raw=st.one_of(st.text(max_size=300), st.emails(), st.integers(), st.none()))
def test_normalize_email_raises_only_value_error(raw: Any) -> None:
    try:
        out = normalize_email(raw)
    except ValueError:
        return
    assert out == out.lower()
    assert "@" in out


@FAST
@given(body=st.binary(max_size=300))
def test_parse_form_raises_only_value_error(body: bytes) -> None:
    try:
        parse_form(body)
    except ValueError:
        pass


@FAST
@given(source=st.text(max_size=40))
def test_compile_path_raises_only_value_error(source: str) -> None:
    try:
        compile_path(source)
    except ValueError:
        pass


@FAST
@given(data=JSON)
def test_parse_mapping_raises_only_mapping_error(data: Any) -> None:
    try:
        compile_mapping(parse_mapping(data))
    except ValueError:  # MappingError is a ValueError
        pass
