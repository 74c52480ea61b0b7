"""How request bodies are read: UTF-8 JSON text into Python values, for every route with a body.

FastAPI decodes bodies with the standard library's defaults, which lose two things payflow needs:

- A number with a fraction or an exponent becomes a float, whose digits are no longer the
  client's: `0.0100000000000000001` and `0.01` are the same float. Here such a number becomes a
  `JsonNumber`: a float (so every other field sees what it always saw, and strict integer fields
  still refuse it) that also keeps the text it was written as, which `core.money` parses.
- A string may hold a lone surrogate (`"\\ud800"`), which is not Unicode text: no database, hash or
  JSON encoder can take it. A body holding one is refused as not valid JSON (RFC 8259 §8.2; I-JSON,
  RFC 7493 §2.1), so no field and no key ever holds one. The body must be UTF-8 (RFC 8259 §8.1).

A refused body raises `json.JSONDecodeError`, which FastAPI answers as a 400 `json_invalid`
problem, like any malformed body. Routers take `JsonBodyRoute` as their route class; a test checks
that every route with a body does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class JsonNumber(float):
    """A JSON number with a fraction or an exponent (or NaN, Infinity): its float value, and the
    exact text the client wrote."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


# Integers stay `int` (exact already); only the rarer non-integral numbers pay for the text.
_DECODER = json.JSONDecoder(parse_float=JsonNumber, parse_constant=JsonNumber)
# The start of an escape of a surrogate code unit (U+D800..U+DFFF). Cheap to look for; only a body
# holding one is read escape by escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# One escape sequence, as the decoder reads them: `\uXXXX` (its code unit captured) or `\` and one
# character, so that in `\\ud800` the escaped backslash is taken first and "ud800" is plain text.
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_HIGH = range(0xD800, 0xDC00)
_LOW = range(0xDC00, 0xE000)


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body, or json.JSONDecodeError."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(
            "the body is not UTF-8", body.decode(errors="replace"), exc.start
        ) from exc
    value = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(text) is not None:
        position = lone_surrogate(text)
        if position is not None:
            raise json.JSONDecodeError("a lone surrogate is not Unicode text", text, position)
    return value


def lone_surrogate(text: str) -> int | None:
    """Where the first escape of a surrogate without its other half starts in valid JSON text, or
    None. The decoder joins a high surrogate's escape with a low one's right after it into one
    character; any other surrogate would reach the application as a lone code point."""
    high_at: int | None = None  # a high surrogate's escape, waiting for the low half
    high_end = -1
    for match in _ESCAPE.finditer(text):
        unit = int(match[1], 16) if match[1] else -1
        if high_at is not None:
            if match.start() != high_end or unit not in _LOW:
                return high_at
            high_at = None
        elif unit in _HIGH:
            high_at, high_end = match.start(), match.end()
        elif unit in _LOW:
            return match.start()
    return high_at


class JsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_body(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is read by `decode_body`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_json_body(request: Request) -> Response:
            return await handle(JsonBodyRequest(request.scope, request.receive))

        return handle_json_body
