"""Phone numbers: validated to E.164 when rules load, shown in the region's formats."""

from __future__ import annotations

import functools

import phonenumbers


# Calls name the tracking numbers again and again, and parsing one costs a call most of its
# CPU: remembered, as many as the largest pools hold, with callers' numbers beside them
# (calls are signed: no stranger fills it).
@functools.lru_cache(maxsize=1 << 17)
def e164(number: str, home: str | None = None) -> str | None:
    """`+7 495 120-00-01` → `+74951200001`; None for anything that is not a valid number.
    With `home` (a region: "RU"), numbers written as people there do, without `+`, are read
    too: `84951200001`, `74951200001`, `4951200001`; and one that is none there, as a number
    written in full without its `+`, as Mango Office writes a foreign caller: `375291234567`, or
    after the international prefix most of Europe dials, as a PBX may: `00375291234567`."""
    parsed = _valid(number, home)
    if parsed is None and home and not (written := number.strip()).startswith("+"):
        parsed = _valid("+" + written.removeprefix("00"), None)
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)) if parsed else None


def _valid(number: str, home: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        parsed = phonenumbers.parse(number, home)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


@functools.cache  # the rules' numbers only
def home(number: str) -> str | None:
    """The region (ISO 3166-1: "RU") of an E.164 number."""
    region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    return str(region) if region and region != phonenumbers.UNKNOWN_REGION else None


def _metadata(parsed: phonenumbers.PhoneNumber) -> phonenumbers.PhoneMetadata | None:
    region = phonenumbers.region_code_for_number(parsed)
    return phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None


# Only the rules' numbers come here (pools, overflow, static, the page's own), each shown again
# and again: all of them are remembered, so a lease costs the same in a pool of 100,000.
@functools.cache
def formats(number: str) -> dict[str, str]:
    """The forms the snippet shows and searches for: E.164, international, national, and the
    national digits (without country code or trunk prefix) that the snippet matches on."""
    parsed = phonenumbers.parse(number, None)
    return {
        "number": number,
        "digits": phonenumbers.national_significant_number(parsed),
        # What may stand before the national digits in a printed number: +7, 7 or 8 in Russia.
        "country_code": str(parsed.country_code),
        "trunk_prefix": (metadata.national_prefix or "") if (metadata := _metadata(parsed)) else "",
        "international": phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        "national": phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
    }


def international(number: str) -> str:
    """`+74951200005` → `+7 495 120-00-05`, as people read a number; anything else as it came."""
    parsed = _valid(number, None)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL) if parsed else number


# Between the digits of a printed number: any space, brackets, dots, and any dash (Unicode's
# Pd: hyphen, en and em dash, the non-breaking hyphen U+2011…).
_SEPARATORS = r"[\s().\p{Pd}]*"


@functools.lru_cache(maxsize=256)
def printed(number: str) -> str:
    """A JavaScript regular expression (flags `gu`) for `number` as pages print it: its country
    code (with or without +) or trunk prefix, then its national digits, separators anywhere;
    after a character that is no digit, or at the start: a postcode's last digit is no country
    code (78701 (512) 555-0100); and before no digit: they are no longer number's."""
    shown = formats(number)
    prefix = rf"(^|\D)(\+?{shown['country_code']}|{shown['trunk_prefix']})?"
    return prefix + _SEPARATORS + _SEPARATORS.join(shown["digits"]) + r"(?!\d)"
