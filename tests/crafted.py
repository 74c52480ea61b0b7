"""Hypothesis strategies for crafted input: what a client can write that payflow must refuse with a
4xx problem and no change (docs/api.md), and the valid amounts it must read exactly.

- Amounts (`core.money`'s grammar): valid texts with their minor units, and the traps — more
  decimals than a float keeps, `_` separators, non-ASCII digits, exponents, signs, spaces,
  leading zeros.
- Text holding a lone surrogate, which no database, hash or JSON encoder can take.
- Keyset cursors a list endpoint cannot have minted: integers beyond BIGINT, times whose offset
  leaves datetime's range, naive or malformed times, wrong shapes, not base64, not JSON.
- Correctly signed tokens whose time claims are numbers but no time (1e20, NaN, 10**30), or whose
  id claims are not strings.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import jwt
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from payflow.config import Settings
from payflow.core.money import MAX_MINOR_UNITS

T = TypeVar("T")

# ---------------------------------------------------------------------------------------- amounts


@st.composite
def amounts(draw: st.DrawFn) -> tuple[str, int]:
    """A valid USD amount as text, in any spelling the grammar allows, and its minor units."""
    minor = draw(st.integers(min_value=1, max_value=MAX_MINOR_UNITS))
    whole, cents = divmod(minor, 100)
    spellings = [f"{whole}.{cents:02d}"]
    if cents % 10 == 0:
        spellings.append(f"{whole}.{cents // 10}")
    if cents == 0:
        spellings.append(str(whole))
    return draw(st.sampled_from(spellings)), minor


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=4)


@st.composite
def float_repr_traps(draw: st.DrawFn) -> str:
    """An amount with more decimals than USD has, often so many that its float is a valid amount's
    float: 0.0100000000000000001 and 1.0000000000000001 are 0.01 and 1.0 as doubles."""
    text, _ = draw(amounts())
    if "." not in text:
        text += "."
    two_decimals = text + "0" * (2 - len(text.split(".")[1]))
    zeros = draw(st.integers(min_value=0, max_value=25))
    return two_decimals + "0" * zeros + draw(st.sampled_from("123456789"))


@st.composite
def exponent_traps(draw: st.DrawFn) -> str:
    """An amount written with an exponent: 1e2, 1.25E+1, 5e-1, 1e400."""
    text, _ = draw(amounts())
    marker = draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "+", "-"]))
    return text + marker + draw(_DIGITS)


@st.composite
def _spoiled_digit(draw: st.DrawFn, spoil: Callable[[str], str]) -> str:
    text, _ = draw(amounts())
    at = draw(st.sampled_from([i for i, char in enumerate(text) if char.isdigit()]))
    return text[:at] + spoil(text[at]) + text[at + 1 :]


def underscore_traps() -> st.SearchStrategy[str]:
    """An amount with a `_` digit separator, which Python's Decimal and int accept: 1_000."""
    return _spoiled_digit(lambda digit: digit + "_" + digit)


def foreign_digit_traps() -> st.SearchStrategy[str]:
    """An amount with one non-ASCII decimal digit (Arabic-Indic, fullwidth, Devanagari, ...),
    which Python's Decimal and int read as digits."""
    foreign = st.characters(categories=["Nd"]).filter(lambda char: not char.isascii())
    return foreign.flatmap(lambda char: _spoiled_digit(lambda _: char))


@st.composite
def _misspelled(draw: st.DrawFn) -> str:
    text, _ = draw(amounts())
    return draw(
        st.sampled_from(
            [f" {text}", f"{text} ", f"+{text}", f"0{text}", f"{text}\n", f"-{text}", f"{text}."]
        )
    )


def json_number_traps() -> st.SearchStrategy[str]:
    """JSON number texts that are not amounts (as a number or as a string)."""
    return st.one_of(float_repr_traps(), exponent_traps())


def amount_traps() -> st.SearchStrategy[str]:
    """Texts that are not amounts, though Python's Decimal (or a float) would make one of them."""
    return st.one_of(json_number_traps(), underscore_traps(), foreign_digit_traps(), _misspelled())


# ----------------------------------------------------------------------------------------- text


@st.composite
def surrogate_texts(draw: st.DrawFn) -> str:
    """Text holding one lone surrogate code point (U+D800..U+DFFF) among ordinary characters."""
    around = st.text(max_size=8)  # hypothesis' text never holds surrogates of its own
    surrogate = draw(st.integers(min_value=0xD800, max_value=0xDFFF).map(chr))
    return draw(around) + surrogate + draw(around)


def json_with_surrogates(value: Any) -> bytes:
    """JSON for a value whose strings may hold lone surrogates: escaped, as a JSON encoder writes
    them (the raw code points are not UTF-8)."""
    return json.dumps(value, ensure_ascii=True).encode()


# -------------------------------------------------------------------------------------- cursors


def cursor_of(value: Any) -> str:
    """What the API mints: URL-safe base64 of JSON, unpadded."""
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_BIGINT = 2**63


@st.composite
def _time_out_of_range(draw: st.DrawFn) -> str:
    """A valid ISO time at an edge of datetime's range whose offset takes it out in UTC: early on
    0001-01-01 ahead of UTC, or late on 9999-12-31 behind it."""
    offset = timedelta(minutes=draw(st.integers(min_value=1, max_value=24 * 60 - 1)))
    inside = timedelta(seconds=draw(st.integers(0, int(offset.total_seconds()) - 1)))
    if draw(st.booleans()):
        moment = datetime.min.replace(tzinfo=timezone(offset)) + inside
    else:
        moment = datetime.max.replace(tzinfo=timezone(-offset)) - inside
    return moment.isoformat()


_NOT_A_TIME = st.one_of(
    st.sampled_from(["", "yesterday", "2020-13-45T00:00:00+00:00", "10000-01-01T00:00:00+00:00"]),
    surrogate_texts(),
    # a time without an offset: which instant it names is unknown
    st.datetimes().map(datetime.isoformat),
)
_ROW_ID = st.uuids().map(str)
_NOT_A_KEY = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def bad_cursors() -> st.SearchStrategy[str]:
    """Cursors no list endpoint (wallet transactions, products, orders, sales) accepts."""
    huge = st.one_of(
        st.integers(min_value=_BIGINT, max_value=10**30),
        st.integers(min_value=-(10**30), max_value=-_BIGINT - 1),
    )
    values = st.one_of(
        st.tuples(huge).map(list),
        st.tuples(huge, _ROW_ID).map(list),
        st.tuples(_time_out_of_range(), _ROW_ID).map(list),
        st.tuples(_NOT_A_TIME, _ROW_ID).map(list),
        st.tuples(_time_out_of_range(), _NOT_A_KEY).map(list),
        st.lists(_NOT_A_KEY, max_size=3),
        _NOT_A_KEY,
    )
    garbage = st.sampled_from(["!!!", "%%%", "a", "WzE", base64.b64encode(b"\xff\xfe").decode()])
    return st.one_of(values.map(cursor_of), garbage)


# --------------------------------------------------------------------------------------- tokens

# The latest and earliest times a datetime holds, as seconds since the epoch.
_LATEST = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
_EARLIEST = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())

_NO_TIME = st.one_of(
    st.integers(min_value=_LATEST + 1, max_value=10**30),
    st.integers(min_value=-(10**30), max_value=_EARLIEST - 1),
    st.floats(min_value=_LATEST + 1.0),
    st.floats(max_value=_EARLIEST - 1.0),
    st.sampled_from([1e20, 1e308, float("nan"), float("inf"), float("-inf")]),
)
_NOT_AN_ID = st.one_of(
    st.integers(), st.floats(), st.booleans(), st.lists(st.integers(), max_size=2)
)


def extreme_claims() -> st.SearchStrategy[tuple[str, object]]:
    """One claim of a signed token made a number that is no time, or an id that is no string."""
    return st.one_of(
        st.tuples(st.sampled_from(["exp", "iat", "nbf"]), _NO_TIME),
        st.tuples(st.sampled_from(["sub", "jti", "fam"]), _NOT_AN_ID),
    )


def signed_token(
    config: Settings,
    user_id: str,
    overrides: Mapping[str, object],
    *,
    refresh: bool = False,
) -> str:
    """A token as payflow signs one (right key, algorithm, type, issuer and audience), with
    `overrides` in its claims."""
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "jti": str(uuid.uuid4()),
        "iss": config.jwt_issuer,
        "aud": config.jwt_audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "type": "refresh" if refresh else "access",
        **({"fam": str(uuid.uuid4())} if refresh else {}),
        **overrides,
    }
    secret = config.jwt_refresh_secret if refresh else config.jwt_access_secret
    typ = "rt+jwt" if refresh else "at+jwt"
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": typ})


# ------------------------------------------------------------------------------------ drawing


def drawn(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """`count` examples of a strategy, the same on every run: for sweeps that send each one to
    many endpoints, where a failure names the value (there is no shrinking to do)."""
    found: list[T] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found
