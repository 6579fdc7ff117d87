"""The gateway: /users and /items forwarded to the user-service and the data-service.

A user's activity feed is the data-service's (it reads Cassandra), although its path is
under /users."""

from __future__ import annotations

import logging

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..runtime import GatewayRuntime
from .responses import JSON_TYPE, MAX_BODY_BYTES, error, too_large

log = logging.getLogger(__name__)

# Request headers passed on upstream; the rest (host, cookies, lengths) are the hop's own.
FORWARDED_HEADERS = frozenset({"content-type", "x-user-id", "accept", "x-request-id"})


async def forward(request: Request, service: str) -> Response:
    runtime: GatewayRuntime = request.app.state.runtime
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
    body = await request.body() if request.method == "POST" else None
    if body is not None and len(body) > MAX_BODY_BYTES:
        raise too_large()
    try:
        upstream = await runtime.client.request(
            request.method,
            runtime.upstreams[service] + request.url.path,
            params=str(request.query_params),
            content=body,
            headers=headers,
        )
    except httpx.HTTPError as exc:
        runtime.upstream_failed(service)
        log.warning("%s unreachable: %s", service, exc)
        return error(502, "bad_gateway", f"{service} is unavailable")
    if upstream.status_code >= 500:
        runtime.upstream_failed(service)
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", JSON_TYPE),
    )


async def to_user_service(request: Request) -> Response:
    return await forward(request, "user-service")


async def to_data_service(request: Request) -> Response:
    return await forward(request, "data-service")


ROUTES: list[BaseRoute] = [
    Route("/users", to_user_service, methods=["GET", "POST"]),
    Route("/users/{id}", to_user_service, methods=["GET"]),
    Route("/users/{id}/activity", to_data_service, methods=["GET"]),
    Route("/items", to_data_service, methods=["GET", "POST"]),
    Route("/items/{id}", to_data_service, methods=["GET"]),
]
