"""Caller numbers to E.164 (``ctilink.routing.numbers``) across the forms switches send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctilink.routing.numbers import NumberNormalizer, is_region

US = NumberNormalizer("US")
FR = NumberNormalizer("FR")


@pytest.mark.parametrize(
    ("normalizer", "raw", "e164"),
    [
        # North America: national, with the country code, international, formatted, URIs
        (US, "5551234567", "+15551234567"),
        (US, "15551234567", "+15551234567"),
        (US, "+15551234567", "+15551234567"),
        (US, "+1 (555) 123-4567", "+15551234567"),
        (US, "555.123.4567", "+15551234567"),
        (US, " 555 123 4567 ", "+15551234567"),
        (US, "011 33 6 12 34 56 78", "+33612345678"),
        (US, "+33 6 12 34 56 78", "+33612345678"),
        (US, "sip:+15551234567@pbx.example.net", "+15551234567"),
        (US, "tel:+1-555-123-4567", "+15551234567"),
        (US, "sip:5551234567@10.0.0.1;user=phone", "+15551234567"),
        # France: trunk prefix 0, international prefix 00
        (FR, "0612345678", "+33612345678"),
        (FR, "06 12 34 56 78", "+33612345678"),
        (FR, "0033612345678", "+33612345678"),
        (FR, "+33612345678", "+33612345678"),
        (FR, "00 1 555 123 4567", "+15551234567"),
        (FR, "612345678", "+33612345678"),
    ],
)
def test_numbers_in_every_form_become_e164(
    normalizer: NumberNormalizer, raw: str, e164: str
) -> None:
    assert normalizer.normalize(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "<unknown>",
        "<Unknown>",
        "unknown",
        "Anonymous",
        "anonymous",
        "Restricted",
        "PRIVATE",
        "unavailable",
        "withheld",
        "Alice",
        "6001",  # an internal extension
        "800",  # a route point
        "+1",
        "12345678901234567890123",
        "555-CALL-NOW",
        "sip:alice@example.net",
    ],
)
def test_withheld_internal_and_nonsense_numbers_are_unknown(raw: str | None) -> None:
    assert US.normalize(raw) is None


def test_a_trunk_prefix_is_removed_when_what_follows_is_a_number() -> None:
    pbx = NumberNormalizer("US", trunk_prefix="9")
    assert pbx.normalize("95551234567") == "+15551234567"
    assert pbx.normalize("9011 44 20 7946 0018") == "+442079460018"
    # 919 is an area code: "9" + 195551234 is no number, so the whole is read as it is.
    assert pbx.normalize("9195551234") == "+19195551234"
    french = NumberNormalizer("FR", trunk_prefix="0")
    assert french.normalize("00612345678") == "+33612345678"  # 0 + national 0612345678


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown region 'XX'"):
        NumberNormalizer("XX")
    with pytest.raises(ValueError, match="unknown region 'us'"):
        NumberNormalizer("us")
    with pytest.raises(ValueError, match="a trunk prefix is digits"):
        NumberNormalizer("US", trunk_prefix="+")
    assert is_region("GB") and not is_region("UK")


@given(st.text(max_size=40))
def test_any_text_gives_e164_or_none(raw: str) -> None:
    result = US.normalize(raw)
    assert result is None or (result.startswith("+") and result[1:].isdigit())
