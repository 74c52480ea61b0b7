"""Schemathesis against payflow's own OpenAPI document, served in-process (issue 7).

Schemathesis runs as `schemathesis run` would (its engine, all four phases: the schema's examples,
boundary coverage, fuzzing, and stateful sequences along the links it infers between operations),
with every check it enables by default: server errors, status codes, content types, response
schemas and headers, negative data rejected, positive data accepted, authentication enforced,
missing required headers, unsupported methods and `Allow`, use after free and resource
availability. Each operation is called with the token of the role that may use it, then, in a
second run, with the other role's. The world is set up once per run: a funded USER, a MERCHANT and
a product with plenty of stock, so that many calls succeed; no example relies on what an earlier
one left behind.

payflow is served by uvicorn in a thread of the test process (tests.live_app), not called through
schemathesis' ASGI client: a gateway purchase makes payflow call its embedded payments sandbox over
HTTP, which only a listening server can answer, so only then do GATEWAY orders, cancellations and
the sandbox's webhooks get exercised too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.core import NotSet
from schemathesis.core.failures import AcceptedNegativeData, Failure
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import Status, events
from schemathesis.engine import from_schema as engine_for
from sqlalchemy.ext.asyncio import create_async_engine

from payflow.config import Settings
from payflow.paths import API_PREFIX, OPENAPI_URL
from tests.crafted import (
    amount_traps,
    bad_cursors,
    extreme_claims,
    json_number_traps,
    json_with_surrogates,
    signed_token,
    surrogate_texts,
)
from tests.live_app import free_port, serve_in_thread
from tests.live_server import CLIENT_LIMITS
from tests.support import DEFAULT_PASSWORD, unique_email

MAX_EXAMPLES = 25

# What only a MERCHANT may do; every other operation is a USER's (or anyone's).
MERCHANT_OPERATIONS = frozenset(
    {
        f"POST {API_PREFIX}/products",
        f"PATCH {API_PREFIX}/products/{{product_id}}",
        f"DELETE {API_PREFIX}/products/{{product_id}}",
        f"GET {API_PREFIX}/products/merchant/my-products",
        f"GET {API_PREFIX}/orders/merchant/sales",
        f"POST {API_PREFIX}/orders/{{order_id}}/refund",
    }
)

# Checks that cannot hold for an operation, each with the reason. Nothing else is excluded.
POSITIVE_DATA_NOT_APPLICABLE = {
    # Success depends on the state: a deposit that would take the balance over the maximum is a
    # 400 (docs/api.md), and the fuzzer's own deposits add up.
    f"POST {API_PREFIX}/wallet/deposit": "the balance maximum",
    # A withdrawal over the balance is a 400 INSUFFICIENT_FUNDS.
    f"POST {API_PREFIX}/wallet/withdraw": "the balance",
    # A purchase over the balance is a 400 INSUFFICIENT_FUNDS.
    f"POST {API_PREFIX}/orders": "the balance",
    # Passwords are limited in UTF-8 bytes (8..72), which JSON Schema cannot count, and
    # email-validator's syntax is stricter than JSON Schema's "email" format.
    f"POST {API_PREFIX}/auth/register": "password bytes, email syntax",
    f"POST {API_PREFIX}/auth/login": "password bytes",
    # Only Stripe can sign an event: no generated request carries a valid Stripe-Signature.
    f"POST {API_PREFIX}/webhooks/stripe": "a signature only Stripe can make",
}


@dataclass(frozen=True)
class World:
    base_url: str
    tokens: dict[str, str]
    config: Settings  # as served: its database and the secrets tokens are signed with
    user_id: str = ""  # the USER's
    product_id: str = ""  # the MERCHANT's product

    def authorization(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    port = free_port()
    served = settings.model_copy(
        update={"public_url": f"http://127.0.0.1:{port}", "log_level": "WARNING"}
    )
    with (
        serve_in_thread(served, port) as base_url,
        httpx.Client(base_url=base_url + API_PREFIX, timeout=30, limits=CLIENT_LIMITS) as client,
    ):
        tokens: dict[str, str] = {}
        ids: dict[str, str] = {}
        for role in ("USER", "MERCHANT"):
            body = {"email": unique_email(role.lower()), "password": DEFAULT_PASSWORD, "role": role}
            registered = _created(client.post("/auth/register", json=body))
            tokens[role], ids[role] = registered["accessToken"], registered["user"]["id"]
        world = World(base_url, tokens, served, ids["USER"])
        deposit = {"amount": "100000.00"}
        _created(client.post("/wallet/deposit", json=deposit, headers=world.authorization("USER")))
        product = {"name": "fuzzed", "price": "1.00", "availableUnits": 1_000_000}
        created = client.post("/products", json=product, headers=world.authorization("MERCHANT"))
        yield replace(world, product_id=_created(created)["id"])


def _config(world: World, *, swap_roles: bool) -> schemathesis.Config:
    own, other = ("MERCHANT", "USER") if swap_roles else ("USER", "MERCHANT")
    return schemathesis.Config.from_dict(
        {
            # Nothing carried over from an earlier run: each run stands on its own.
            "cache": {"enabled": False},
            "headers": world.authorization(own),
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # Sequences of valid calls. Schemathesis may "negate" an optional body by leaving it
            # out (a valid request), and its case filters do not reach this phase; invalid input
            # is what the three phases before it are for.
            "phases": {"stateful": {"generation": {"mode": "positive"}}},
            "operations": [
                {
                    "include-name": sorted(MERCHANT_OPERATIONS),
                    "headers": world.authorization(other),
                },
                *(
                    {
                        "include-name": label,
                        "checks": {"positive_data_acceptance": {"enabled": False}},
                    }
                    for label in sorted(POSITIVE_DATA_NOT_APPLICABLE)
                ),
            ],
        }
    )


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _independent(context: Any, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """Schema-valid requests that stand on their own, whatever earlier examples did.

    - A cursor is opaque and minted by the server: a string it did not mint is rightly a 400
      (docs/api.md), so a positive example carries none.
    - An idempotency key already used with another request is rightly a 422: each positive example
      gets a key of its own, the same in the header and in the body's `idempotencyKey` alias.
    - JSON Schema counts 5.0 as an integer; payflow's integer fields take JSON integers (unit
      counts refuse 5.0 on purpose), so a positive example writes its integral numbers as such.
    Negative examples are sent as generated.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if case.query and "cursor" in case.query:
        case.query = {name: value for name, value in case.query.items() if name != "cursor"}
    key = uuid.uuid4().hex
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = key
    if isinstance(case.body, dict) and "idempotencyKey" in case.body:
        case.body = {**case.body, "idempotencyKey": key}
    if case.body is not None:
        case.body = _integral(case.body)
    return case


def _omits_an_optional_body(case: schemathesis.Case[Any]) -> bool:
    """Whether a "negative" case's only negation is leaving an optional body out: a valid request,
    which Schemathesis (4.x) may make."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    negated = {location for location, info in meta.components.items() if info.mode.is_negative}
    return negated == {ParameterLocation.BODY} and isinstance(case.body, NotSet)


def _negated(context: Any, case: schemathesis.Case[Any]) -> bool:
    """Whether a case is what it claims to be; one that only leaves an optional body out is
    dropped, not sent."""
    return not _omits_an_optional_body(case)


def _real_failure(
    context: Any, failure: Failure, case: schemathesis.Case[Any], response: Any
) -> bool:
    """Whether a failure is the API's. In the fuzzing phase a case can be marked negative for its
    left-out body only after the case filters ran (seen with an optional refund body): its
    acceptance is then right, not a failure. Every other check on it still counts."""
    return not (isinstance(failure, AcceptedNegativeData) and _omits_an_optional_body(case))


def _failures(stream: Iterator[events.EngineEvent]) -> tuple[list[str], set[str]]:
    """What went wrong, one readable entry per (operation, check, title); and the phases run."""
    found: dict[tuple[str, str, str], str] = {}
    phases: set[str] = set()
    for event in stream:
        if isinstance(event, events.PhaseFinished) and event.status is not Status.SKIP:
            phases.add(event.phase.name.value)
        elif isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status is not Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    interaction = event.recorder.interactions.get(case_id)
                    response = interaction.response if interaction else None
                    answer = (
                        f"{response.status_code} {response.content[:300]!r}" if response else "-"
                    )
                    key = (event.label or "stateful", check.name, failure.title)
                    found.setdefault(
                        key,
                        f"{key[0]} · {check.name} · {failure.title}\n{failure.message}\n"
                        f"answer: {answer}\n{check.failure_info.code_sample}",
                    )
        elif isinstance(event, events.NonFatalError):
            found.setdefault(
                (event.label, "error", type(event.value).__name__),
                f"{event.label} · error\n{event.info.format()}",
            )
        elif isinstance(event, events.FatalError):
            found[("engine", "fatal", "")] = f"fatal: {event.exception!r}"
        elif isinstance(event, events.EngineFinished):
            for failure in event.failures:
                found.setdefault(("run", "after_run", failure.title), failure.message)
    return list(found.values()), phases


@pytest.mark.parametrize("swap_roles", [False, True], ids=["own-role", "other-role"])
def test_schemathesis_finds_nothing_wrong(world: World, swap_roles: bool) -> None:
    schema = schemathesis.openapi.from_url(
        world.base_url + OPENAPI_URL, config=_config(world, swap_roles=swap_roles)
    )
    schema.hook("map_case")(_independent)
    schema.hook("filter_case")(_negated)
    schema.hook("filter_failure")(_real_failure)

    failures, phases = _failures(iter(engine_for(schema).execute()))

    assert not failures, "\n\n".join(failures)
    assert {"examples", "coverage", "fuzzing", "stateful"} <= phases


# ------------------------------------------------------------------------------ crafted input


@dataclass(frozen=True)
class Target:
    """An operation of the document and the part of it a crafted value goes into."""

    method: str
    path: str
    part: str  # a body property, "cursor" or "Authorization"

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"


def _property_kinds(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    kinds = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        kinds |= _property_kinds(document, branch)
    return kinds


def _targets(document: dict[str, Any]) -> dict[str, list[Target]]:
    """Where each kind of crafted value goes: every string and every amount of a JSON body,
    every cursor, and the bearer token of every GET that takes one."""
    found: dict[str, list[Target]] = {"text": [], "amount": [], "cursor": [], "token": []}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            while "$ref" in schema:
                schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            for name, sub in schema.get("properties", {}).items():
                kinds = _property_kinds(document, sub)
                if "string" in kinds:
                    found["text"].append(Target(method, path, name))
                if {"string", "number"} <= kinds:
                    found["amount"].append(Target(method, path, name))
            if any(p["name"] == "cursor" for p in operation.get("parameters", [])):
                found["cursor"].append(Target(method, path, "cursor"))
            if method == "get" and operation.get("security"):
                found["token"].append(Target(method, path, "Authorization"))
    return found


def _table_rows(config: Settings) -> dict[str, list[str]]:
    """Every row of every table of the served database."""

    async def read() -> dict[str, list[str]]:
        engine = create_async_engine(config.database_url)
        try:
            async with engine.connect() as conn:
                names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
                return {
                    name: sorted(
                        repr(tuple(row))
                        for row in await conn.execute(sa.text(f'SELECT * FROM "{name}"'))  # noqa: S608
                    )
                    for name in names
                }
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _crafted_request(
    world: World, data: st.DataObject, targets: dict[str, list[Target]]
) -> tuple[Target, dict[str, Any]]:
    """A request that is valid but for one crafted part, and what it must be refused with."""
    kind = data.draw(st.sampled_from([kind for kind, found in targets.items() if found]))
    target = data.draw(st.sampled_from(targets[kind]), label="target")
    role = "MERCHANT" if target.label in MERCHANT_OPERATIONS else "USER"
    headers = {**world.authorization(role), "Content-Type": "application/json"}
    request: dict[str, Any] = {"headers": headers, "params": {}}
    if kind == "text":  # a lone surrogate, escaped: the decoder refuses the whole body
        text = data.draw(surrogate_texts(), label="text")
        request["content"] = json_with_surrogates({target.part: text})
        return target, {**request, "status": 400, "detail": "The request body is not valid JSON"}
    if kind == "amount":  # an amount trap, as a string or as the number it spells
        trap = data.draw(st.one_of(amount_traps(), json_number_traps()), label="amount")
        written = json.dumps(trap) if data.draw(st.booleans(), label="as a string") else trap
        if not _is_json_number(written):
            written = json.dumps(trap)
        request["content"] = ('{"' + target.part + '": ' + written + "}").encode()
        return target, {**request, "status": 400, "field": target.part}
    if kind == "cursor":
        request["params"] = {"cursor": data.draw(bad_cursors(), label="cursor")}
        return target, {**request, "status": 400, "field": "cursor"}
    claim, value = data.draw(extreme_claims(), label="claim")
    token = signed_token(world.config, world.user_id, {claim: value})
    headers["Authorization"] = f"Bearer {token}"
    return target, {**request, "status": 401}


def _is_json_number(text: str) -> bool:
    """Whether `text` is exactly one JSON number token (" 3.00" decodes, but is not one)."""
    try:
        return text == text.strip() and isinstance(json.loads(text), int | float)
    except ValueError:
        return False


def test_crafted_input_is_a_4xx_problem_and_changes_nothing(world: World) -> None:
    """Hypothesis drives crafted values (tests/crafted.py) into every place of the document that
    takes them: lone surrogates into every string of every body, amount traps into every amount,
    cursors no list minted into every list, and correctly signed tokens whose claims are no time
    or id into every authenticated GET. Each is a 4xx problem naming the cause; nothing changes."""
    document = httpx.get(world.base_url + OPENAPI_URL, timeout=30).json()
    targets = _targets(document)
    assert all(targets.values()), {kind: len(found) for kind, found in targets.items()}
    before = _table_rows(world.config)

    with httpx.Client(base_url=world.base_url, timeout=30, limits=CLIENT_LIMITS) as client:

        @hypothesis_settings(
            max_examples=MAX_EXAMPLES * 6,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(data=st.data())
        def crafted_request_is_refused(data: st.DataObject) -> None:
            target, expected = _crafted_request(world, data, targets)
            path = target.path.replace("{product_id}", world.product_id)
            path = path.replace("{order_id}", str(uuid.uuid4()))
            response = client.request(
                target.method,
                path,
                params=expected["params"],
                headers=expected["headers"],
                content=expected.get("content"),
            )
            assert response.status_code == expected["status"], response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            body = response.json()
            if "detail" in expected:
                assert body["detail"] == expected["detail"]
            if "field" in expected:
                assert expected["field"] in [error["field"] for error in body["errors"]]

        crafted_request_is_refused()

    assert _table_rows(world.config) == before


async def test_every_operation_declares_the_problems_it_can_answer_with(app: FastAPI) -> None:
    """What the shared machinery can answer is declared once for all, as a Problem body."""
    document = app.openapi()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            declared = operation["responses"]
            expected = {"400", "500", "503"}
            if operation.get("security"):
                expected |= {"401", "403"}
            if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
                expected.add("404")
            if method in ("post", "put", "patch", "delete"):
                expected |= {"413", "415"}
            assert expected <= set(declared), f"{method.upper()} {path}: {sorted(declared)}"
            for status, response in declared.items():
                if status < "400":
                    continue
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}
                pinned = schema["allOf"][1]["properties"]
                assert pinned["status"] == {"const": int(status)}
                assert pinned["code"]["enum"], f"{method.upper()} {path} {status}"
                if status == "429":
                    assert response["headers"]["Retry-After"]["required"] is True
    assert "HTTPValidationError" not in document["components"]["schemas"]
