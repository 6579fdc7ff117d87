"""JSON responses and request parsing shared by the endpoints."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..service import Invalid

MAX_BODY_BYTES = 64 * 1024
JSON_TYPE = "application/json"


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def json_bytes(data: bytes, status: int = 200) -> Response:
    return Response(data, status_code=status, media_type=JSON_TYPE)


def too_large() -> HTTPException:
    return HTTPException(413, f"the body must be at most {MAX_BODY_BYTES} bytes")


async def read_json(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise too_large()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large()
    if not body:
        raise Invalid("a JSON body is required", 400)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}", 400) from exc


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise Invalid(f"'{name}' must be an integer", 400) from exc
    if not low <= value <= high:
        raise Invalid(f"'{name}' must be between {low} and {high}", 400)
    return value
