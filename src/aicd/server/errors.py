"""Exception handlers: every error is {"error": "<message>"} with the status its class means.

AuthError 401, PermissionDeniedError 403, NotFoundError 404, ConflictError 409,
ConfigError/PipelineError/GitError 422, StoreError 503, any other AicdError 400.
Messages come from the errors, which never carry a secret; request validation
errors drop the offending input (it may be one). A StoreError's message names the
database (host, user, file): the caller gets a generic 503, the server's log the details.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aicd.errors import (
    AicdError,
    AuthError,
    ConfigError,
    ConflictError,
    GitError,
    NotFoundError,
    PermissionDeniedError,
    PipelineError,
    StoreError,
)
from aicd.triggers.mirror import redact

log = logging.getLogger("aicd.server")
STORE_UNAVAILABLE = (
    "the server's database could not answer this request; try again (details in the server's log)"
)

_STATUS: tuple[tuple[type[AicdError], int], ...] = (
    (AuthError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ConfigError, 422),
    (PipelineError, 422),
    (GitError, 422),
    (StoreError, 503),
)


def status_for(exc: AicdError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_response(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _aicd_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AicdError)
    status = status_for(exc)
    if isinstance(exc, StoreError):
        log.warning("%s %s: %s", request.method, request.url.path, redact(str(exc)))
        return error_response(status, STORE_UNAVAILABLE)
    return error_response(status, str(exc) or type(exc).__name__)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(str(part) for part in d['loc'])}: {d['msg']}" for d in details)
    return JSONResponse({"error": message or "invalid request", "detail": details}, status_code=422)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal server error (see the server's log)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AicdError, _aicd_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
