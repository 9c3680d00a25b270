"""Caller numbers to E.164, with Google's libphonenumber (the ``phonenumbers`` port).

Theory of operation
-------------------
Switches report caller ids however their trunks deliver them: national (``5551234567``,
``0612345678``), international (``+33612345678``), with the international call prefix of
the country (``0033...`` in France, ``011 33...`` in North America), with the PBX's own
outside-line ("trunk") prefix in front (``9`` + the number), formatted (``(555) 123-4567``),
as a SIP or tel URI, or not at all (``<unknown>``, ``anonymous``, ``Restricted``...).
Customer numbers are stored in E.164 (``+15551234567``), so a caller id matches whatever
form the switch and the import file used.

``NumberNormalizer(default_region, trunk_prefix)`` reads a number the way a caller in
``default_region`` (ISO 3166 alpha-2, e.g. ``US``, ``FR``) would have dialled it, which is
how libphonenumber interprets national numbers, national (trunk) prefixes such as the
French ``0`` and international call prefixes. ``trunk_prefix`` is the PBX's outside-line
prefix, if it puts one in front of external caller ids: it is removed first when what
follows is a possible number. A result is returned only for a *possible* number (right
length for its country; ``is_possible_number``), not only for a *valid* one: fictional
ranges such as 555 are real in call centres' test plans and CRMs. Anything else (names,
internal extensions such as ``6001``, withheld numbers) is None: an unknown caller.

Parsing costs about 50 µs, so results are cached (LRU) per normalizer.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

import phonenumbers

# Caller-id texts switches send for a withheld or missing number (compared in lower case).
ANONYMOUS: Final = frozenset(
    {
        "",
        "<unknown>",
        "unknown",
        "anonymous",
        "private",
        "restricted",
        "unavailable",
        "withheld",
        "blocked",
        "<unavailable>",
    }
)
_URI: Final = re.compile(r"^(?:sips?|tel):([^@;]+)")
_FORMATTING: Final = re.compile(r"[\s().\-/]")
_DIALLED: Final = re.compile(r"\+?[0-9]{2,20}")
_REGION: Final = re.compile(r"[A-Z]{2}")


def is_region(code: str) -> bool:
    """True for a region libphonenumber knows (ISO 3166 alpha-2 in upper case)."""
    return _REGION.fullmatch(code) is not None and code in phonenumbers.SUPPORTED_REGIONS


class NumberNormalizer:
    """Caller ids to E.164 for one default region and trunk prefix (see the module doc)."""

    def __init__(self, default_region: str = "US", trunk_prefix: str = "", cache_size: int = 65536):
        if not is_region(default_region):
            raise ValueError(f"unknown region {default_region!r} (ISO 3166 alpha-2, e.g. US)")
        if trunk_prefix and not trunk_prefix.isdigit():
            raise ValueError(f"a trunk prefix is digits, not {trunk_prefix!r}")
        self.default_region = default_region
        self.trunk_prefix = trunk_prefix
        self.normalize = lru_cache(maxsize=cache_size)(self._normalize)

    def _normalize(self, raw: str | None) -> str | None:
        """``raw`` in E.164, or None when it is no (possible) phone number."""
        if raw is None:
            return None
        text = raw.strip()
        if text.lower() in ANONYMOUS:
            return None
        uri = _URI.match(text)
        if uri is not None:
            text = uri.group(1)
        digits = _FORMATTING.sub("", text)
        if not _DIALLED.fullmatch(digits):
            return None
        prefix = self.trunk_prefix
        if prefix and digits.startswith(prefix) and len(digits) > len(prefix):
            stripped = self._e164(digits[len(prefix) :])
            if stripped is not None:
                return stripped
        return self._e164(digits)

    def _e164(self, digits: str) -> str | None:
        try:
            number = phonenumbers.parse(digits, self.default_region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
