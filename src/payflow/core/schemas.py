"""Base pydantic models for the API (camelCase on the wire, unknown fields refused), and the
problem responses the OpenAPI document declares for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from payflow.core.problems import PROBLEM_MEDIA_TYPE, STATUS_BY_CODE


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refused here rather than failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Text a request may carry into the database (or look up in it).
StorableText = Annotated[
    str, AfterValidator(_storable), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]


class RequestModel(BaseModel):
    """A request body. Unknown fields are a 400, so nothing can be mass-assigned."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _json_object(cls, data: Any) -> Any:
        # FastAPI validates bodies with from_attributes=True, under which any object not of a
        # builtin type passes as a model by its attributes: a body that is a lone JSON number
        # (a core.json_body.JsonNumber) would be a RefundRequest with every field left out.
        if isinstance(data, dict | cls):
            return data
        raise PydanticCustomError("model_type", "Input should be a JSON object")


class ResponseModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class FieldProblem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    in_: str = Field(alias="in")
    field: str
    message: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str
    request_id: str | None = Field(alias="requestId")
    errors: list[FieldProblem] | None = None


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"


def _problem_response(status: int, codes: Iterable[str]) -> dict[str, Any]:
    """One OpenAPI response: a Problem whose `status` and `code` are pinned to these values."""
    names = sorted(set(codes))
    schema = {
        "allOf": [
            {"$ref": PROBLEM_SCHEMA_REF},
            {
                "type": "object",
                "properties": {"status": {"const": status}, "code": {"enum": names}},
            },
        ]
    }
    response: dict[str, Any] = {
        "description": " or ".join(names),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
    }
    if status == STATUS_BY_CODE["RATE_LIMITED"]:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds until the next attempt may succeed",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def problem_codes_of(response: Mapping[str, Any]) -> list[str]:
    """The codes an OpenAPI response built by `_problem_response` names; [] for any other."""
    content = response.get("content", {}).get(PROBLEM_MEDIA_TYPE)
    if content is None:
        return []
    for part in content.get("schema", {}).get("allOf", []):
        code = part.get("properties", {}).get("code", {})
        if "enum" in code:
            return list(code["enum"])
    return []


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problem codes an operation can answer with."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, "VALIDATION_ERROR"):
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    return {status: _problem_response(status, names) for status, names in sorted(by_status.items())}


def add_problem_responses(operation: dict[str, Any], codes: Iterable[str]) -> None:
    """Merge the problem responses for `codes` into an OpenAPI operation object, keeping the codes
    it already lists. A non-problem response at the same status (FastAPI's default 422 body, which
    this API never sends) is replaced."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    by_status: dict[int, set[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], set()).add(code)
    for status, names in by_status.items():
        existing = responses.get(str(status))
        known = problem_codes_of(existing) if existing is not None else []
        responses[str(status)] = _problem_response(status, {*names, *known})
