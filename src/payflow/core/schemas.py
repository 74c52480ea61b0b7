"""Base pydantic models for the API: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from payflow.core.problems import PROBLEM_MEDIA_TYPE, STATUS_BY_CODE


class RequestModel(BaseModel):
    """A request body. Unknown fields are a 400, so nothing can be mass-assigned."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", str_strip_whitespace=False)


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


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problem codes an operation can answer with."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, "VALIDATION_ERROR"):
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    return {
        status: {
            "description": " or ".join(sorted(set(names))),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status, names in sorted(by_status.items())
    }
