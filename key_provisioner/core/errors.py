"""Domain errors: each carries its HTTP status and problem type as class attributes.

Services raise these; only ``api.problems`` turns them into problem+json
(RFC 9457) responses, so the service layer never speaks HTTP.
"""

from __future__ import annotations

from typing import ClassVar

PROBLEM_BASE = "urn:elock:problem:"


class KeyServerError(Exception):
    """Any error of the key server that is not an HTTP request error."""


class ConfigError(KeyServerError):
    """The settings cannot be used; the message names the setting and the fix."""


class DomainError(KeyServerError):
    """A request the service layer refuses, with a reason a person can act on."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_BASE + cls.slug


class UnauthenticatedError(DomainError):
    status = 401
    slug = "unauthenticated"
    title = "Missing or invalid API token"


class ForbiddenError(DomainError):
    status = 403
    slug = "forbidden"
    title = "The API token's role may not do this"


class NotFoundError(DomainError):
    status = 404
    slug = "not-found"
    title = "No such resource"


class ConflictError(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflicts with the current state"


class LockRetiredError(ConflictError):
    slug = "lock-retired"
    title = "The lock is retired"


class PushNotRetryableError(ConflictError):
    slug = "push-not-retryable"
    title = "Only the failed push of a live key can be retried"


class InvalidRequestError(DomainError):
    """Well-formed input that breaks a rule only the service layer can check."""

    status = 422
    slug = "invalid-request"
    title = "The request breaks a rule"


class SecretUnavailableError(DomainError):
    """A sealed lock secret does not open: wrong master key or damaged row."""

    status = 500
    slug = "lock-secret-unavailable"
    title = "The lock's secret cannot be unsealed"


#: Every problem type the API can answer with, for the docs and the OpenAPI text.
PROBLEM_TYPES: tuple[type[DomainError], ...] = (
    UnauthenticatedError,
    ForbiddenError,
    NotFoundError,
    ConflictError,
    LockRetiredError,
    PushNotRetryableError,
    InvalidRequestError,
    SecretUnavailableError,
)
