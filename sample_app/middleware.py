"""ASGI middleware: request metrics by route template, and cacheable static files."""

from __future__ import annotations

import time

from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    if isinstance(route, Route):
        return route.path
    return "unmatched"


class MetricsMiddleware:
    """Counts and times every request by route template, never by raw path."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        for name, value in scope.get("headers", ()):
            if name == b"x-user-id" and value:
                self.metrics.active.touch(value[:64].decode("latin-1"))
                break
        try:
            await self.app(scope, receive, capture)
        finally:
            route = route_template(scope)
            method = scope["method"]
            plan = self.metrics.plan
            self.metrics.requests.labels(
                plan=plan, route=route, method=method, code=str(status)
            ).inc()
            self.metrics.duration.labels(plan=plan, route=route, method=method).observe(
                time.perf_counter() - started
            )


class CachedStatic:
    """Static files with Cache-Control, so a CDN-style edge may keep them."""

    def __init__(self, app: ASGIApp, max_age: int = 3600) -> None:
        self.app = app
        self.header = (b"cache-control", f"public, max-age={max_age}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_header(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, add_header)
