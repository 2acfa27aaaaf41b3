"""The normalizers' short ways give the libraries' answers (issue 15: cheaper validation on
the hot path, the same answer for every input).

``shared.mapping.normalize`` reads common North American phone layouts without
phonenumbers' parser and lowercases plain ASCII emails without running email_validator.
Here every text either short way takes is also given to the library path it skips, and
the two answers must be the same; texts near the edges of each shape (other layouts,
other regions, special-use and over-long domains, odd labels) are generated too.
"""

from __future__ import annotations

import dataclasses
import string

import phonenumbers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.mapping import CompiledMapping, compile_mapping, normalize
from shared.mapping.apply import map_fields
from shared.mapping.normalize import _NANP_NATIONAL, _NANP_PLUS, _PLAIN_EMAIL
from shared.templates import TEMPLATES

pytestmark = pytest.mark.unit

MANY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGIONS = [None, "US", "CA", "GB", "JM", "PR", "DE", "MX", "AU"]


def _library_phone(text: str, region: str | None) -> tuple[str, str | None] | str:
    """What phonenumbers alone says (the slow way, as before the short way existed)."""
    number = normalize._valid_number(text, region)
    if number is None and text.startswith(("00", "\uff10\uff10")):
        number = normalize._valid_number("+" + text[2:], None)
    if number is None:
        return "invalid_phone"
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        number.extension or None,
    )


def _same_phone(text: str, region: str | None) -> None:
    fast = normalize._nanp(text, region)
    slow = _library_phone(text, region)
    if fast is not None:
        assert (fast, None) == slow, (text, region)
    assert normalize._parse_phone.__wrapped__(text, region) == slow, (text, region)


@MANY
@given(text=st.from_regex(_NANP_PLUS, fullmatch=True), region=st.sampled_from(REGIONS))
@example(text="+1 626 663 3444", region="GB")
@example(text="+1(212)555-0100", region=None)
def test_plus_one_layouts_read_as_the_parser_reads_them(text: str, region: str | None) -> None:
    _same_phone(text, region)


@MANY
@given(text=st.from_regex(_NANP_NATIONAL, fullmatch=True), region=st.sampled_from(REGIONS))
@example(text="(626) 663-3444", region="US")
@example(text="626.663.3444", region="CA")
@example(text="(626 663-3444", region="US")
@example(text="2125550100", region="JM")
def test_national_layouts_read_as_the_parser_reads_them(text: str, region: str | None) -> None:
    _same_phone(text, region)


@MANY
@given(
    text=st.text(alphabet="0123456789 +().-x#", min_size=1, max_size=20),
    region=st.sampled_from(REGIONS),
)
@example(text="16266633444", region="US")
@example(text="1-626-663-3444", region="US")
@example(text="0116266633444", region="US")
@example(text="+1 626 663 3444 x12", region="US")
def test_other_layouts_are_still_the_parsers(text: str, region: str | None) -> None:
    _same_phone(text, region)


def test_unicode_digits_never_take_the_short_way() -> None:
    arabic = "\u0666\u0662\u0666\u0666\u0666\u0663\u0663\u0664\u0664\u0664"  # 6266633444
    assert normalize._nanp(arabic, "US") is None


# --- emails ---------------------------------------------------------------------------


def _library_email(text: str) -> str | None:
    """What email_validator alone says (NFKC, validate, lowercase)."""
    import unicodedata

    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(unicodedata.normalize("NFKC", text), check_deliverability=False)
    except EmailNotValidError:
        return None
    except Exception:
        return None
    return str(result.normalized).lower()


def _same_email(text: str) -> None:
    fast = normalize._plain_email(text)
    slow = _library_email(text)
    if fast is not None:
        assert fast == slow, text
    assert normalize._check_email.__wrapped__(text) == slow, text


_LABEL = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=70)
_LOCAL = st.text(alphabet=string.ascii_letters + string.digits + "_+-.!#", min_size=1, max_size=70)
_TLD = st.sampled_from(
    ["com", "COM", "io", "test", "local", "localhost", "onion", "arpa", "invalid", "x1", "c0m"]
)


@MANY
@given(text=st.from_regex(_PLAIN_EMAIL, fullmatch=True))
@example(text="Benjie.Malinao@Example.COM")
@example(text="a@b.test")
@example(text="a@xn--bcher-kva.com")
@example(text="a@ab--cd.com")
@example(text="a" * 65 + "@example.com")
@example(text="a@" + "b" * 64 + ".com")
@example(text="a@" + ("b" * 60 + ".") * 4 + "com")
@example(text="postmaster@example.com")
def test_plain_addresses_are_what_the_validator_says(text: str) -> None:
    _same_email(text)


@MANY
@given(local=_LOCAL, labels=st.lists(_LABEL, min_size=0, max_size=4), tld=_TLD)
def test_addresses_near_the_plain_shape_are_what_the_validator_says(
    local: str, labels: list[str], tld: str
) -> None:
    _same_email(local + "@" + ".".join([*labels, tld]))


@MANY
@given(text=st.emails())
def test_any_address_is_what_the_validator_says(text: str) -> None:
    _same_email(text)


@MANY
@given(national=st.integers(min_value=2_000_000_000, max_value=9_999_999_999))
def test_the_us_pattern_check_is_the_librarys_validity(national: int) -> None:
    number = phonenumbers.PhoneNumber(country_code=1, national_number=national)
    assert normalize._valid_nanp(number, str(national)) == phonenumbers.is_valid_number(number)


# --- entries by key ----------------------------------------------------------------------


def _every_entry(compiled: CompiledMapping) -> CompiledMapping:
    """The same mapping applying every entry in order (as before entries were indexed)."""
    return dataclasses.replace(compiled, by_key={}, always=tuple(range(len(compiled.entries))))


_TEMPLATE_KEYS = sorted(
    {e.source for t in TEMPLATES.values() for e in t.mapping.entries if e.source}
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["+15125550100", "(512) 555-0100", "Ann@Example.COM", " Ann  Lee ", ""]),
    st.dictionaries(st.sampled_from(["a", "b", "name"]), st.text(max_size=5), max_size=2),
)


@given(
    template=st.sampled_from(sorted(TEMPLATES)),
    body=st.dictionaries(
        st.one_of(st.sampled_from(_TEMPLATE_KEYS), st.text(max_size=8)), _VALUES, max_size=12
    ),
    controls=st.booleans(),
)
@MANY
def test_entries_found_by_key_map_as_every_entry_in_order(
    template: str, body: dict[str, object], controls: bool
) -> None:
    compiled = compile_mapping(TEMPLATES[template].mapping)
    fast = map_fields(body, compiled, default_region="US", controls=controls)
    slow = map_fields(body, _every_entry(compiled), default_region="US", controls=controls)
    assert fast == slow, body
