"""Every operation, fed bad input, answers a 4xx problem and changes nothing (issue 7, docs/api.md).

The operations come from payflow's own OpenAPI document, so a new endpoint is swept as soon as it
exists. Each one gets, as a USER and as a MERCHANT, requests that are otherwise valid (real ids, a
body built from its schema) but for one bad part: oversized (a body over 1 MiB, 10k-character
strings, 1e309, 2**63, 5000-digit numbers, deep nesting), malformed (not JSON, another content
type, an array or null instead of an object), wrongly typed (strings for numbers, numbers for
strings, objects for strings) or on a boundary (0 and 101 where 1..100 is allowed, empty strings,
negative amounts, NUL bytes and other unicode in strings, malformed ids in the path and the query,
bad `Authorization`, `Idempotency-Key` and `If-Match` headers). Bad means bad by the operation's
own schema: a candidate the schema accepts is not sent, except the oversized and NUL strings,
which no field may take.

Some candidates are generated (tests/crafted.py, the same on every run): text holding a lone
surrogate (for every string field, and as a key), amounts a float or Python's Decimal would read
(too many decimals, exponents, `_`, non-ASCII digits), cursors no list can have minted (integers
beyond BIGINT, times whose offset leaves datetime's range, wrong shapes), and correctly signed
access and refresh tokens whose time claims are no time (exp=1e20) or whose ids are no strings.

Every answer must be a 4xx `application/problem+json` whose `code` is one of docs/api.md's with that
status, whose `requestId` is the `X-Request-ID` sent back, and whose status the document declares
for the operation. Around each operation's sweep every table is read, and must be unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema_rs
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.config import Settings
from payflow.wiring import AppContext
from tests.crafted import (
    amount_traps,
    bad_cursors,
    drawn,
    extreme_claims,
    json_number_traps,
    signed_token,
    surrogate_texts,
)
from tests.support import DEFAULT_PASSWORD, create_product, deposit, register, unique_email

# docs/api.md: every code an error may carry, and its status.
SPEC_CODES = {
    "VALIDATION_ERROR": 400,
    "INSUFFICIENT_FUNDS": 400,
    "INVALID_CREDENTIALS": 401,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "WALLET_LOCKED": 403,
    "ACCOUNT_DISABLED": 403,
    "NOT_FOUND": 404,
    "EMAIL_TAKEN": 409,
    "OUT_OF_STOCK": 409,
    "PRODUCT_UNAVAILABLE": 409,
    "VERSION_CONFLICT": 409,
    "ORDER_STATE_CONFLICT": 409,
    "IDEMPOTENCY_KEY_IN_USE": 409,
    "IDEMPOTENCY_KEY_MISMATCH": 422,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "METHOD_NOT_ALLOWED": 405,
    "INVALID_SIGNATURE": 400,
    "RATE_LIMITED": 429,
    "PAYMENT_GATEWAY_ERROR": 502,
    "SERVICE_UNAVAILABLE": 503,
}
JSON = "application/json"
MIB = 1024 * 1024
HUGE = "x" * 10_000
# Sent with every probe: not a sane request id, so the answer must carry one of its own.
INSANE_REQUEST_ID = "not a sane id"


class Raw(str):
    """A JSON token written as is (json.dumps cannot write 1e309 or NaN)."""


@dataclass(frozen=True)
class Candidate:
    what: str
    value: Any
    # Sent even when the field's schema accepts it: no field may take it.
    always: bool = False


# Values for one body field; each is sent only where the field's schema refuses it (or `always`).
FIELD_CANDIDATES = (
    Candidate("a number", 12345),
    Candidate("a numeric string", "12345"),
    Candidate("a boolean", True),
    Candidate("an object", {"a": "b"}),
    Candidate("an array", ["x"]),
    Candidate("null", None),
    Candidate("an empty string", ""),
    Candidate("unicode", "ü€😀"),
    Candidate("not a UUID", "not-a-uuid"),
    Candidate("zero", 0),
    Candidate("-1", -1),
    Candidate("101", 101),
    Candidate("0.5", 0.5),
    Candidate("2**63", 2**63),
    Candidate("-(2**63)-1", -(2**63) - 1),
    Candidate("a negative amount", "-1.00"),
    Candidate("a zero amount", "0.00"),
    Candidate("too many decimals", "1.001"),
    Candidate("over the maximum", "99999999999.99"),
    Candidate("an exponent", "1e400"),
    Candidate("NaN as text", "NaN"),
    Candidate("Infinity as text", "Infinity"),
)
# Text with a lone surrogate, as JSON escapes it (the code point itself is not UTF-8).
SURROGATE_TEXTS = [Raw(json.dumps(text)) for text in drawn(surrogate_texts(), 4)]
STRING_CANDIDATES = (
    Candidate("a 10k-character string", HUGE, always=True),
    Candidate("a NUL byte", "bad\x00value", always=True),
    Candidate("unicode with a NUL byte", "ü€😀\x00", always=True),
    *(Candidate(f"the lone surrogate {text}", text, always=True) for text in SURROGATE_TEXTS),
)
NUMBER_CANDIDATES = (
    Candidate("1e309", Raw("1e309"), always=True),
    Candidate("-1e309", Raw("-1e309"), always=True),
    Candidate("NaN", Raw("NaN"), always=True),
    Candidate("a 5000-digit number", Raw("9" * 5000), always=True),
    Candidate("2**63", 2**63, always=True),
    # Numbers with a fraction or an exponent: no integer field takes one, and no amount these.
    *(Candidate(text, Raw(text), always=True) for text in drawn(json_number_traps(), 8)),
)
# For amounts (a field that takes a string or a number): what a float or Python's Decimal would
# read as one.
AMOUNT_CANDIDATES = tuple(
    Candidate(f"the amount trap {text!r}", text, always=True) for text in drawn(amount_traps(), 12)
)
CURSOR_CANDIDATES = drawn(bad_cursors(), 12)
# (claim, value) made part of a correctly signed token: a number that is no time, or an id that
# is no string.
TOKEN_CLAIMS = drawn(extreme_claims(), 8)
QUERY_CANDIDATES = (
    "",
    "0",
    "101",
    "-1",
    "abc",
    "1.5",
    str(2**63),
    "9" * 5000,
    "1e309",
    "ü€😀",
    "not-a-uuid",
    "NOT_A_STATUS",
)
PATH_CANDIDATES = ("not-a-uuid", "0", "-1", "ü€😀", "\x00", HUGE, "1e309", "..", "%2e%2e%2f")


@dataclass
class Probe:
    what: str
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str | bytes] = field(default_factory=dict)
    content: bytes | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        schema: dict[str, Any] | None = content.get(JSON, {}).get("schema")
        return schema

    @property
    def body_required(self) -> bool:
        return bool(self.spec.get("requestBody", {}).get("required", False))


@dataclass
class World:
    document: dict[str, Any]
    tokens: dict[str, str]
    path_ids: dict[str, str]  # path parameter → a real id
    known: dict[str, Any]  # body field → a value that works
    config: Settings  # the secrets payflow signs its tokens with
    user_id: str  # the USER's id

    def validator(self, schema: dict[str, Any]) -> jsonschema_rs.Validator:
        root = {**schema, "components": self.document.get("components", {})}
        return jsonschema_rs.validator_for(root, validate_formats=True)

    def accepts(self, schema: dict[str, Any], value: Any) -> bool:
        if isinstance(value, Raw):
            return False
        return bool(self.validator(schema).is_valid(value))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.document["components"]["schemas"][name]
        return schema


def _dumps(value: Any) -> bytes:
    """JSON, with Raw tokens written as they are."""
    raws: dict[str, str] = {}

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            key = f"@@raw{len(raws)}@@"
            raws[key] = str(item)
            return key
        if isinstance(item, dict):
            return {mark(k): mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value), ensure_ascii=False)
    for key, raw in raws.items():
        text = text.replace(f'"{key}"', raw)
    return text.encode()


def _types(world: World, schema: dict[str, Any]) -> set[str]:
    schema = world.resolve(schema)
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, []):
            found |= _types(world, branch)
    return found


def _valid(world: World, schema: dict[str, Any], name: str) -> Any:
    """A simple value the schema accepts (and that works, for the fields the world knows)."""
    if name in world.known:
        return world.known[name]
    schema = world.resolve(schema)
    if "examples" in schema:
        return schema["examples"][0]
    kind = schema.get("type")
    if kind != "object":
        for key in ("anyOf", "oneOf"):
            branches = [b for b in schema.get(key, []) if b.get("type") != "null"]
            if branches:
                return _valid(world, branches[0], name)
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        # "At least one of": the first alternative's fields.
        for alternative in schema.get("anyOf", [])[:1]:
            required |= set(alternative.get("required", []))
        return {key: _valid(world, sub, key) for key, sub in properties.items() if key in required}
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "email":
            return unique_email("sweep")
        if fmt == "uuid":
            return str(uuid.uuid4())
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind in ("number", "boolean"):
        return 1 if kind == "number" else True
    return None


def _field_candidates(world: World, name: str, schema: dict[str, Any]) -> Iterator[Candidate]:
    kinds = _types(world, schema)
    extra: tuple[Candidate, ...] = ()
    if "string" in kinds:
        # A password is hashed, never stored as text: a NUL in it is just another character.
        nul_is_text = "password" in name.lower()
        extra += tuple(c for c in STRING_CANDIDATES if not (nul_is_text and "\x00" in c.value))
    if kinds & {"integer", "number"}:
        extra += NUMBER_CANDIDATES
    if {"string", "number"} <= kinds:
        extra += AMOUNT_CANDIDATES
    if name == "refreshToken":
        extra += tuple(
            Candidate(f"a refresh token with {claim}={value!r}", token, always=True)
            for claim, value, token in _crafted_tokens(world, refresh=True)
        )
    for candidate in (*FIELD_CANDIDATES, *extra):
        if candidate.always or not world.accepts(schema, candidate.value):
            yield candidate


def _wire_accepts(world: World, schema: dict[str, Any], text: str) -> bool:
    """Whether a query or path value, as text on the wire, is one the schema accepts."""
    kinds = _types(world, schema)
    value: Any = text
    digits = text.removeprefix("-")
    if "integer" in kinds and digits.isascii() and digits.isdigit() and len(digits) < 100:
        value = int(text)
    return world.accepts(schema, value)


def _object_schema(world: World, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The object a body schema describes (through an "object or null" union), if any."""
    schema = world.resolve(schema)
    branches = [b for b in schema.get("anyOf", schema.get("oneOf", [])) if b.get("type") != "null"]
    if schema.get("type") != "object" and len(branches) == 1:
        schema = world.resolve(branches[0])
    return schema if schema.get("type") == "object" else None


def _body_probes(world: World, op: Operation, base: Probe) -> Iterator[Probe]:
    schema = op.body_schema
    if schema is None:
        return
    body = _valid(world, schema, "")
    resolved = _object_schema(world, schema)
    if resolved is not None and isinstance(body, dict):
        properties: dict[str, Any] = resolved.get("properties", {})
        for name, sub in properties.items():
            for candidate in _field_candidates(world, name, sub):
                yield _with_body(base, f"{name}: {candidate.what}", {**body, name: candidate.value})
        for name in resolved.get("required", []):
            missing = {k: v for k, v in body.items() if k != name}
            yield _with_body(base, f"{name} missing", missing)
        yield _with_body(base, "an unknown field", {**body, "isAdmin": True})
        for text in SURROGATE_TEXTS:
            yield _with_body(base, f"a key with the lone surrogate {text}", {**body, text: 1})
    for what, raw in (
        ("not JSON", b'{"a":'),
        ("an array", b"[]"),
        ("an array of objects", b"[{}]"),
        ("a string", b'"x"'),
        ("a number", b"1"),
        ("1e309", b"1e309"),
        ("a 5000-digit number", b"9" * 5000),
        ("deeply nested arrays", b"[" * 100_000 + b"]" * 100_000),
        ("deeply nested objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("null", b"null"),
        ("nothing", b""),
    ):
        if raw in (b"null", b"") and (not op.body_required or world.accepts(schema, None)):
            continue  # an optional body may be left out (or sent as null)
        yield Probe(
            f"body: {what}", base.method, base.path, headers={"Content-Type": JSON}, content=raw
        )


def _with_body(base: Probe, what: str, body: Any) -> Probe:
    return Probe(
        f"body {what}", base.method, base.path, headers={"Content-Type": JSON}, content=_dumps(body)
    )


def _transport_probes(op: Operation, base: Probe) -> Iterator[Probe]:
    """What the HTTP shell refuses for any operation that reads a body."""
    if op.method not in ("post", "put", "patch", "delete"):
        return
    oversized = _dumps({"padding": "x" * (MIB + 1)})
    yield Probe("a body over 1 MiB", base.method, base.path, {}, {"Content-Type": JSON}, oversized)
    body = base.content or b"{}"
    for media in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ):
        yield Probe(f"a {media} body", base.method, base.path, {}, {"Content-Type": media}, body)
    yield Probe("a body without a content type", base.method, base.path, {}, {}, body)


def _query_probes(world: World, op: Operation, base: Probe) -> Iterator[Probe]:
    for parameter in op.parameters("query"):
        schema = parameter.get("schema", {})
        texts = [t for t in QUERY_CANDIDATES if not _wire_accepts(world, schema, t)]
        if "string" in _types(world, schema):
            texts += [HUGE, "bad\x00value"]
        if parameter["name"] == "cursor":  # any string by its schema; only the API mints them
            texts += CURSOR_CANDIDATES
        for text in texts:
            params = {**base.params, parameter["name"]: text}
            what = f"query {parameter['name']}={text[:20]!r}"
            yield Probe(what, base.method, base.path, params, base.headers, base.content)


def _path_probes(world: World, op: Operation, base: Probe) -> Iterator[Probe]:
    for parameter in op.parameters("path"):
        for text in PATH_CANDIDATES:
            path = _fill(world, op.path, {parameter["name"]: quote(text, safe="%")})
            what = f"path {parameter['name']}={text[:20]!r}"
            yield Probe(what, base.method, path, base.params, base.headers, base.content)


def _header_probes(world: World, op: Operation, base: Probe) -> Iterator[Probe]:
    bad: dict[str, list[str | bytes]] = {}
    security = op.spec.get("security", [])
    if security:
        token = world.tokens["USER"]
        bad["Authorization"] = [
            "Bearer " + HUGE,
            "Bearer not.a.jwt",
            "Basic dXNlcjpwYXNzd29yZA==",
            "Bearer " + token[:-4] + "AAAA",
            "Bearer ü€".encode(),
            *("Bearer " + crafted for _, _, crafted in _crafted_tokens(world, refresh=False)),
        ]
        if {} not in security:  # no credentials at all, where they are not optional
            bad["Authorization"].append("")
    for parameter in op.parameters("header"):
        name = parameter["name"]
        if name.lower() == "idempotency-key":
            bad[name] = ["", "x" * 256, HUGE, "ü€".encode(), "tab\there"]
        elif name.lower() == "if-match":
            bad[name] = ["abc", '"-1"', '"' + "9" * 19 + '"', HUGE, 'W/"1"', "1, 2"]
        else:
            bad[name] = [HUGE, "ü€".encode()]
    for name, values in bad.items():
        for value in values:
            headers = {**base.headers, name: value}
            what = f"header {name}: {value[:20]!r}"
            yield Probe(what, base.method, base.path, base.params, headers, base.content)


def _crafted_tokens(world: World, *, refresh: bool) -> Iterator[tuple[str, object, str]]:
    """(claim, value, token): the USER's tokens, correctly signed, with one crafted claim."""
    for claim, value in TOKEN_CLAIMS:
        token = signed_token(world.config, world.user_id, {claim: value}, refresh=refresh)
        yield claim, value, token


def _fill(world: World, template: str, overrides: dict[str, str]) -> str:
    path = template
    for name, value in {**world.path_ids, **overrides}.items():
        path = path.replace("{" + name + "}", value)
    return path


def _probes(world: World, op: Operation) -> Iterator[Probe]:
    params = {}
    for parameter in op.parameters("query"):
        if parameter.get("required"):
            params[parameter["name"]] = str(_valid(world, parameter["schema"], parameter["name"]))
    base = Probe("", op.method.upper(), _fill(world, op.path, {}), params)
    if op.body_schema is not None:
        base.headers = {"Content-Type": JSON}
        base.content = _dumps(_valid(world, op.body_schema, ""))
    yield from _body_probes(world, op, base)
    yield from _transport_probes(op, base)
    yield from _query_probes(world, op, base)
    yield from _path_probes(world, op, base)
    yield from _header_probes(world, op, base)


def _problem(op: Operation, probe: Probe, response: httpx.Response) -> str | None:
    """What is wrong with the answer to a bad request; None when it is a proper 4xx problem."""
    status = response.status_code
    if not 400 <= status < 500:
        return f"answered {status}: {response.text[:300]}"
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return f"answered {status} as {response.headers.get('content-type')}"
    body = response.json()
    code = body.get("code")
    if SPEC_CODES.get(code) != status or body.get("status") != status:
        return f"answered {status} with code {code} and status {body.get('status')}"
    request_id = response.headers.get("x-request-id")
    if not request_id or request_id == INSANE_REQUEST_ID or body.get("requestId") != request_id:
        return f"requestId {body.get('requestId')!r} vs X-Request-ID {request_id!r}"
    if str(status) not in op.spec.get("responses", {}):
        return f"answered {status} ({code}), which the document does not declare"
    return None


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


async def _snapshot(ctx: AppContext) -> dict[str, list[str]]:
    """Every row of every table."""

    async def read(conn: AsyncConnection) -> dict[str, list[str]]:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        tables: dict[str, list[str]] = {}
        for name in sorted(names):
            rows = await conn.execute(sa.text(f'SELECT * FROM "{name}"'))  # noqa: S608
            tables[name] = sorted(repr(tuple(row)) for row in rows)
        return tables

    return await ctx.db.read(read, snapshot=True)


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient) -> World:
    merchant = await register(client, role="MERCHANT")
    user = await register(client)
    await deposit(client, user, "100.00")
    product = await create_product(client, merchant, price="1.00", units=10)
    order = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET", "quantity": 1},
        headers=user.headers,
    )
    assert order.status_code == 201, order.text
    return World(
        document=app.openapi(),
        tokens={"USER": user.access_token, "MERCHANT": merchant.access_token},
        path_ids={"product_id": product["id"], "order_id": order.json()["id"]},
        known={
            "productId": product["id"],
            "refreshToken": user.refresh_token,
            "password": DEFAULT_PASSWORD,
        },
        config=app.state.context.settings,
        user_id=user.id,
    )


def _operations(document: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method, path, spec)
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
    ]


async def test_bad_input_gets_a_4xx_problem_and_changes_nothing(app: FastAPI, world: World) -> None:
    ctx: AppContext = app.state.context
    failures: list[str] = []
    sent = 0
    transport = httpx.ASGITransport(app=app)
    # Redirects are followed (a path ending in an encoded "/" is redirected without it): what
    # counts is the answer a client ends up with.
    async with httpx.AsyncClient(
        transport=transport, base_url="http://payflow.test", follow_redirects=True
    ) as http:
        for op in _operations(world.document):
            before = await _snapshot(ctx)
            for role in ("USER", "MERCHANT"):
                for probe in _probes(world, op):
                    headers: dict[str, str | bytes] = {
                        "Authorization": f"Bearer {world.tokens[role]}",
                        "X-Request-ID": INSANE_REQUEST_ID,
                        **probe.headers,
                    }
                    if headers["Authorization"] == "":
                        del headers["Authorization"]
                    response = await http.request(
                        probe.method,
                        probe.path,
                        params=probe.params,
                        headers=[(k.encode(), _latin1(v)) for k, v in headers.items()],
                        content=probe.content,
                    )
                    sent += 1
                    wrong = _problem(op, probe, response)
                    if wrong:
                        failures.append(f"{op.label} as {role}, {probe.what}: {wrong}")
            after = await _snapshot(ctx)
            changed = sorted(name for name in before if before[name] != after.get(name))
            if changed:
                failures.append(f"{op.label}: bad input changed {', '.join(changed)}")

    assert sent > 1000  # every operation was swept, not skipped
    assert not failures, f"{len(failures)} of {sent} bad requests:\n" + "\n".join(failures[:80])
