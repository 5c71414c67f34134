"""Bodies every part of the API shares: problems and pages."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# No C0 or C1 control character, NUL included: PostgreSQL refuses NUL in text (a 500
# unless refused here), and a control character in a label or a name misleads whoever reads it.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"
Label = Annotated[
    str,
    StringConstraints(max_length=100, pattern=PRINTABLE),
    Field(description="Free text for people; no control characters."),
]


class StrictModel(BaseModel):
    """Inputs refuse fields they do not know, so a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body, query, path ...")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (media type application/problem+json)."""

    type: str = Field(
        description="A URI naming the kind of problem; `about:blank` for plain HTTP errors.",
        examples=["urn:elock:problem:not-found"],
    )
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this request, for a person.")
    errors: list[FieldError] | None = Field(
        default=None, description="For validation problems: each field that failed."
    )


class PageBase(BaseModel):
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not readable (not UTF-8 JSON)",
    401: "Missing or invalid API token",
    403: "The API token's role (auditor) may not change anything",
    404: "No such resource",
    409: "Conflicts with the current state (for example, the lock is retired)",
    422: "The request failed validation",
    500: "Internal error (for example, a lock secret that does not unseal)",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem+json answers (see ``api.openapi``)."""
    return {
        code: {"model": Problem, "description": PROBLEM_DESCRIPTIONS[code]}
        for code in sorted({401, 500, *codes})
    }
