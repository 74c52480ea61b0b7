"""Stripe's form encoding: `a[b][0][c]=v` pairs in, nested dicts and lists out.

The official SDK flattens every nested parameter this way (`line_items[0][price_data][currency]`,
`metadata[order_id]`, `expand[0]`); `expand[]=x` (append) is accepted too, as curl users write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from payflow.sandbox.errors import parameter_invalid

_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# Free-form maps whose keys may look like list indices and must stay keys.
_MAPS = frozenset({"metadata"})


def parse_form(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return decode_pairs(parse_qsl(text, keep_blank_values=True))


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for name, value in pairs:
        match = _NAME.match(name)
        if match is None:
            raise parameter_invalid(name, f"Invalid parameter name: {name}")
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        _assign(root, path, value, name)
    return _listify(root)


def _assign(root: dict[str, Any], path: list[str], value: str, name: str) -> None:
    node = root
    for segment in path[:-1]:
        key = str(len(node)) if segment == "" else segment
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise parameter_invalid(
                name, f"Invalid value for {name}: it is both a value and a hash"
            )
        node = child
    last = str(len(node)) if path[-1] == "" else path[-1]
    if isinstance(node.get(last), dict):
        raise parameter_invalid(name, f"Invalid value for {name}: it is both a value and a hash")
    node[last] = value


def _listify(node: dict[str, Any]) -> dict[str, Any]:
    """Hashes keyed 0..n become lists, except free-form maps such as metadata."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            converted = _listify(value)
            if key not in _MAPS and converted and all(k.isdigit() for k in converted):
                out[key] = [converted[k] for k in sorted(converted, key=int)]
            else:
                out[key] = converted
        else:
            out[key] = value
    return out
