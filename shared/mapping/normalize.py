"""Phones and emails: the two contact fields, in the one form the rest of the system keeps.

Phones become E.164 (a national number is read in the workspace's region, or the entry's;
an international number may start with ``+``, with the region's own international prefix
such as ``011`` in the US, or with ``00``, the prefix of most of the world, in any region).
Emails are NFKC-normalized (an address in full-width letters is the ASCII address),
checked (no DNS) and lowercased. Errors are ``ValueError(code)``, never echoing the value
(no PII).

Both are on the gateway's hot path, and the libraries' general parsers were most of a
lead's cost there. The shapes most leads come in take a shorter way to the *same* answer
(tests/unit/test_mapping_fast_paths.py compares both ways with hypothesis): a North
American number in a common layout is read without phonenumbers' parser (validity and
the E.164 form still come from phonenumbers' metadata), and a plain ASCII address whose
every character and length the validator's rules accept is lowercased without running
them. Anything else, and every refusal, goes through the libraries.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from shared.mapping.limits import MAX_FIELD_LENGTH, MAX_PHONE_INPUT

REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def phone_parts(raw: Any, region: str) -> tuple[str, str | None]:
    """(E.164, extension or None); raises ValueError(code)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValueError("invalid_type")
    text = str(raw).strip()
    if not text:
        raise ValueError("required")
    if len(text) > MAX_PHONE_INPUT:
        raise ValueError("too_long")
    region_code = region.upper() if isinstance(region, str) and region.upper() in REGIONS else None
    result = _parse_phone(text, region_code)
    if isinstance(result, str):
        raise ValueError(result)
    return result


# Parsing and validating is most of a lead's mapping time; vendors retry and resend the
# same numbers, so recent answers (valid or not) are remembered. Pure, so safe to share.
@lru_cache(maxsize=16384)
def _parse_phone(text: str, region_code: str | None) -> tuple[str, str | None] | str:
    """(E.164, extension) or an error code.

    phonenumbers reads the region's own international prefix (``011`` in the US, ``0011``
    in Australia); ``00`` is read as one in every region when the number is not a valid
    national one (no national number starts with it)."""
    fast = _nanp(text, region_code)
    if fast is not None:
        return fast, None
    number = _valid_number(text, region_code)
    if number is None and text.startswith(("00", "\uff10\uff10")):  # (or full-width 00)
        number = _valid_number("+" + text[2:], None)
    if number is None:
        return "invalid_phone"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, (number.extension or None)


# A North American number as most vendors lay it out: "+1 626 663 3444", "+16266633444",
# "(626) 663-3444", "626.663.3444", "6266633444". The parser reads each as country code 1
# with the ten digits as the national number: with "+1" in any region; without it in the
# regions whose national numbers these are (the area code starts 2-9, so no national or
# international prefix can be read off its front).
_NANP_PLUS = re.compile(r"\+1[ .-]?\(?([2-9]\d\d)\)?[ .-]?(\d{3})[ .-]?(\d{4})", re.ASCII)
_NANP_NATIONAL = re.compile(r"\(?([2-9]\d\d)\)?[ .-]?(\d{3})[ .-]?(\d{4})", re.ASCII)
_NANP_REGIONS = frozenset({"US", "CA"})


def _nanp(text: str, region_code: str | None) -> str | None:
    """The E.164 form of a valid North American number in a common layout; None for any
    other text (and for an invalid number: the parser gives the refusal)."""
    match = _NANP_PLUS.fullmatch(text)
    if match is None:
        if region_code not in _NANP_REGIONS:
            return None
        match = _NANP_NATIONAL.fullmatch(text)
        if match is None:
            return None
    digits = "".join(match.groups())
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))
    return "+1" + digits if _valid_nanp(number, digits) else None


# phonenumbers.is_valid_number finds a number's region (for country code 1 the first
# region, in the library's order, whose patterns the number fits) and checks the number
# against that region's patterns again, one library call per pattern. The US comes first
# and has no leading-digit rule, so a number that fits the US patterns is valid: that is
# checked here in one pass over the same patterns (what phonenumbers' _number_type_helper
# does: the general pattern, then any type's pattern, each after its possible lengths).
# A number that does not fit them goes to the library.
_Check = tuple[frozenset[int], re.Pattern[str]]


def _checks(region: str) -> tuple[_Check, tuple[_Check, ...]] | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.general_desc is None:
        return None

    def check(desc: Any) -> _Check | None:
        if desc is None or not desc.national_number_pattern:
            return None
        return frozenset(desc.possible_length), re.compile(desc.national_number_pattern)

    general = check(metadata.general_desc)
    types = (
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
        metadata.fixed_line,
        metadata.mobile,
    )
    if general is None or metadata.leading_digits is not None:
        return None
    return general, tuple(c for c in map(check, types) if c is not None)


_US_CHECKS = _checks("US") if phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1][0] == "US" else None


def _fits(check: _Check, nsn: str) -> bool:
    lengths, pattern = check
    return (not lengths or len(nsn) in lengths) and pattern.fullmatch(nsn) is not None


def _valid_nanp(number: phonenumbers.PhoneNumber, nsn: str) -> bool:
    """``phonenumbers.is_valid_number(number)`` for a number of country code 1 whose
    national significant number is ``nsn``."""
    if _US_CHECKS is not None:
        general, types = _US_CHECKS
        if _fits(general, nsn):
            for check in types:
                if _fits(check, nsn):
                    return True
    return bool(phonenumbers.is_valid_number(number))


def _valid_number(text: str, region_code: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region_code)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def normalize_phone(raw: str, region: str) -> str:
    """A phone number as E.164, reading national numbers in ``region``.

    Raises ``ValueError(code)`` with code ``invalid_phone``, ``invalid_type``,
    ``too_long`` or ``required``. An extension is dropped here (see map_and_validate)."""
    return phone_parts(raw, region)[0]


def normalize_email(raw: Any) -> str:
    """A well-formed address, NFKC-normalized and lowercased (no DNS). Raises
    ``ValueError(code)``."""
    if not isinstance(raw, str):
        raise ValueError("invalid_type")
    text = raw.strip()
    if not text:
        raise ValueError("required")
    if len(text) > MAX_FIELD_LENGTH["email"]:
        raise ValueError("too_long")
    normalized = _check_email(text)
    if normalized is None:
        raise ValueError("invalid_email")
    return normalized


# A plain ASCII address the validator accepts as it is: a dot-atom of letters, digits and
# _ + - before the @; after it hostname labels of at most 63 letters, digits and inner
# hyphens, and a top-level domain of letters. The validator's other rules (lengths, no
# "ab--" label starts or Punycode, no special-use domain) are checked in _plain_email.
_PLAIN_EMAIL = re.compile(
    r"([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{1,63}))"
)
# The validator refuses these domains and every domain under them; all are top-level
# names (were one not, every address would go to the validator).
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_ARE_TOP_LEVEL = all("." not in name for name in _SPECIAL_USE)


def _plain_email(text: str) -> str | None:
    """``text`` lowercased when it is a plain address the validator accepts unchanged
    (but for case); None when the validator has to decide."""
    match = _PLAIN_EMAIL.fullmatch(text)
    if match is None or not _SPECIAL_ARE_TOP_LEVEL:
        return None
    local, domain, top = match.groups()
    if (
        len(local) > 64
        or len(text) > 254
        or len(domain) > 253
        or "--" in domain
        or top.lower() in _SPECIAL_USE
    ):
        return None
    return text.lower()


@lru_cache(maxsize=16384)
def _check_email(text: str) -> str | None:
    plain = _plain_email(text)
    if plain is not None:
        return plain
    # Compatibility forms (full-width letters, the full-width at sign) are the same
    # address: one contact.
    text = unicodedata.normalize("NFKC", text)
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    except Exception:  # the library's own edge cases (odd unicode): still just invalid
        return None
    return str(result.normalized).lower()
