"""Errors that carry their HTTP status; the app renders every one as `{"error": "..."}`."""

from __future__ import annotations


class ServingError(Exception):
    """A request the server refuses; `status` is the HTTP status code."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ServingError):
    """400: the body is not a well-formed request (JSON, shapes, datatypes)."""

    status = 400


class NotFound(ServingError):
    """404: no such model, version or endpoint."""

    status = 404


class MethodNotAllowed(ServingError):
    """405: the endpoint exists but not with this method."""

    status = 405


class PayloadTooLarge(ServingError):
    """413: the body exceeds the configured limit."""

    status = 413


class UnsupportedMediaType(ServingError):
    """415: a body in an encoding the server does not read (compressed)."""

    status = 415


class Unprocessable(ServingError):
    """422: well-formed, but not valid for this model (features, values)."""

    status = 422


class NotReady(ServingError):
    """503: the model is not loaded and verified (yet, or at all)."""

    status = 503
