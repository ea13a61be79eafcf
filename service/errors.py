"""Errors that reach a client as `{"error": {"code", "message"}}`.

    HTTPError            any refusal; carries status, a stable code and a message
    ├── BadRequest       400: a parameter is missing, malformed or too large
    ├── Unauthorized     401: a missing or wrong signature or token
    ├── Forbidden        403: e.g. a browser origin the site does not allow
    ├── NotFound         404: e.g. an unknown site
    ├── MethodNotAllowed 405: a method the address does not take; says which it does
    ├── TooLarge         413: a request body over the limit
    ├── UnsupportedType  415: a body in a form the address does not read
    ├── TooManyRequests  429: a client over its rate limit; says when to retry
    └── Unavailable      503: nothing can keep the request now (store and spool both down); retry

Rule-file mistakes are not HTTP errors: see `service.rules.rulefiles.RulesError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class HTTPError(Exception):
    status = 400

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = {} if retry_after is None else {"Retry-After": str(retry_after)}


class BadRequest(HTTPError):
    status = 400


def only(params: Mapping[str, str], known: Iterable[str]) -> None:
    """`BadRequest` for a query parameter a report or log does not take: a filter misspelt
    (`metirc=`), or one another report has (`status=`, `variant=` by source), would otherwise
    answer all of it as if filtered."""
    names = set(known)
    if unknown := sorted(set(params) - names):
        raise BadRequest("invalid_filter",
                         f"unknown parameter {unknown[0][:40]!r}: this takes {', '.join(sorted(names))}")


class Unauthorized(HTTPError):
    status = 401


class Forbidden(HTTPError):
    status = 403


class NotFound(HTTPError):
    status = 404


class MethodNotAllowed(HTTPError):
    status = 405

    def __init__(self, code: str, message: str, allow: str) -> None:
        super().__init__(code, message)
        self.headers["Allow"] = allow


class Conflict(HTTPError):
    status = 409


class TooLarge(HTTPError):
    status = 413


class UnsupportedType(HTTPError):
    status = 415


class TooManyRequests(HTTPError):
    status = 429


class Unavailable(HTTPError):
    status = 503
