"""Every error of the API as JSON ``{"detail": "<one line>", "errors": [...]}``, never a traceback.

401 admin without a valid token, 413 body over the limit, 422 invalid input (k outside 1..100, malformed
JSON, wrong types: one readable line plus a compact per-field list, no echo of the input), 503 while
starting, overloaded or with the feedback store down. Anything unexpected is logged and answered 500.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from zadanie4.api.schemas import ErrorResponse

log = logging.getLogger(__name__)
JSON = "application/json"
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid input (clear message in `detail`)."},
    503: {"model": ErrorResponse, "description": "Starting up or overloaded; retry shortly."},
}
"""The error answers every route documents in OpenAPI."""
ADMIN_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token (or no token configured)."},
}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer encoded with orjson (no pydantic round trip)."""
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def error_response(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, *, retry_after: bool = False
) -> Response:
    """The API's error shape; ``retry_after`` adds ``Retry-After: 1`` (503s the client may retry)."""
    headers = {"Retry-After": "1"} if retry_after else None
    return json_response({"detail": detail, "errors": errors or []}, status, headers)


_WRONG_SHAPE = frozenset({"list_type", "model_type", "model_attributes_type", "dict_type"})


def _without_union_noise(errors: list[Any], limit: int) -> list[Any]:
    """For a body that is "an object or a list of them", keep only the branch the client meant.

    Pydantic reports both union branches (``FeedbackEvent`` and ``list[FeedbackEvent]``); the branch
    whose error is just "wrong shape" (e.g. "Input should be a valid list" for an object) is dropped,
    and the union tags are removed from the locations. At most ``limit`` errors are returned (a bad
    1 MB body can carry 100,000 errors; rebuilding them all kept the event loop busy for 0.6 s).
    """
    tags = {str(e["loc"][1]) for e in errors if len(e.get("loc", ())) > 1 and str(e["loc"][0]) == "body"}
    union_tags = {t for t in tags if t[:1].isupper() or t.startswith("list[")}
    if len(union_tags) < 2:
        return errors[:limit]
    wrong_shape = {str(e["loc"][1]) for e in errors if len(e["loc"]) == 2 and e.get("type") in _WRONG_SHAPE}
    keep = [e for e in errors if str(e["loc"][1]) not in wrong_shape] or errors
    return [{**e, "loc": ("body", *e["loc"][2:])} if str(e["loc"][1]) in union_tags else e for e in keep[:limit]]


def validation_message(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """One readable line plus a compact per-field list (no echo of the input)."""
    compact = []
    parts = []
    for err in _without_union_noise(errors, limit=10):
        loc = [str(x) if not isinstance(x, int) else x for x in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        elif loc == ["body"] and err.get("type") in ("too_short", "too_long"):  # the /feedback list
            ctx = err.get("ctx") or {}
            msg = (
                "the list of events is empty"
                if err.get("type") == "too_short"
                else f"at most {ctx.get('max_length')} events per request, got {ctx.get('actual_length')}"
            )
        compact.append({"loc": loc, "msg": msg, "type": str(err.get("type", "value_error"))})
        where = ".".join(str(x) for x in loc if x not in ("body", "query")) or "body"
        if err.get("type") == "json_invalid":
            where = f"body (at character {loc[-1]})" if len(loc) > 1 else "body"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request", compact


def _allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> set[str]:
    """Every method some route serves at this request's path (for the ``Allow`` header of a 405)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods.update(route_methods)
    return methods


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors, HTTP errors and unexpected exceptions in the API's error shape."""

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail, errors = validation_message(list(exc.errors()))
        return error_response(422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
            # e.g. JSON nested too deeply for the parser (RecursionError): still the client's bad JSON
            return error_response(
                422, "body: request body could not be parsed as JSON (malformed or nested too deeply)"
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only the methods of the first route matching the path; /recommend has two.
            headers["Allow"] = ", ".join(sorted(_allowed_methods(app, request.scope)))
        return json_response({"detail": str(exc.detail), "errors": []}, exc.status_code, headers or None)

    @app.exception_handler(Exception)
    async def _on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal error")
