"""Errors raised by the front's services; pages flash them, the API returns them as JSON."""

from __future__ import annotations

from typing import Any


class FrontError(Exception):
    """A refusal with an HTTP status, a short machine-readable code and a human detail."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}

    def as_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadInput(FrontError):
    status, code = 400, "bad_request"


class Unauthorized(FrontError):
    status, code = 401, "unauthorized"


class Forbidden(FrontError):
    status, code = 403, "forbidden"


class NotFound(FrontError):
    status, code = 404, "not_found"


class Conflict(FrontError):
    status, code = 409, "conflict"


class Invalid(FrontError):
    status, code = 422, "invalid"


class TooManyRequests(FrontError):
    status, code = 429, "rate_limited"


class Unavailable(FrontError):
    status, code = 503, "unavailable"
