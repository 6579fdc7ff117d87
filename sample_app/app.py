"""The ASGI application: the same image serves every role of every phase.

Roles: monolith (all routes), user-service (/users), data-service (/items),
gateway (proxies /users and /items to the two services, serves /static). Every
role serves /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .cache import Cache, open_cache
from .config import Settings
from .events import EventPublisher
from .metrics import Metrics
from .queue import JobPublisher
from .service import MAX_LIMIT, DataService, Invalid
from .storage import Conflict, NotFound, StorageUnavailable, open_store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
JSON_TYPE = "application/json"


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def json_bytes(data: bytes, status: int = 200) -> Response:
    return Response(data, status_code=status, media_type=JSON_TYPE)


# -- metrics middleware -------------------------------------------------------------


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


# -- request helpers ------------------------------------------------------------------


async def read_json(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise HTTPException(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
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


# -- the runtime: everything a role's handlers share ----------------------------------


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(settings.plan, settings.active_user_window_seconds)
        self.service: DataService | None = None
        self.gateway: httpx.AsyncClient | None = None
        self.schema_ready = False
        if settings.role == "gateway":
            return
        store = open_store(settings, on_query=self.metrics.query)
        cache = open_cache(settings, self.metrics)
        jobs = JobPublisher(settings.queue_url, self.metrics) if settings.queue_url else None
        events = (
            EventPublisher(settings.kafka_bootstrap, self.metrics)
            if settings.kafka_bootstrap
            else None
        )
        self.service = DataService(settings, store, self.metrics, cache, jobs, events)

    def data(self) -> DataService:
        assert self.service is not None
        return self.service

    def ensure_schema(self) -> bool:
        if self.service is None or self.schema_ready:
            return True
        try:
            self.service.store.ensure_schema()
        except StorageUnavailable as exc:
            log.warning("database not reachable yet: %s", exc)
            return False
        self.schema_ready = True
        return True

    async def start(self) -> None:
        if self.settings.role == "gateway":
            self.gateway = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0))
            return
        await run_in_threadpool(self.ensure_schema)
        svc = self.data()
        if svc.jobs is not None:
            svc.jobs.start()
        if svc.events is not None:
            svc.events.start()

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.service is None:
            return
        svc = self.service
        if svc.jobs is not None:
            await run_in_threadpool(svc.jobs.stop)
        if svc.events is not None:
            await run_in_threadpool(svc.events.stop)
        svc.cache.close()
        svc.store.close()


# -- handlers ---------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


async def _one(
    peek: Callable[[str], bytes | None], load: Callable[[str], bytes | None], key: str
) -> bytes | None:
    """One user or item: a hit in process memory is answered here, without a hop to a
    worker thread; otherwise it is loaded there. A malformed id names nothing."""
    data = peek(key)
    if data is not None:
        return data
    try:
        return await run_in_threadpool(load, key)
    except Invalid:
        return None


def data_routes(rt: Runtime, users: bool, items: bool) -> list[BaseRoute]:
    async def create_user(request: Request) -> Response:
        body = await read_json(request)
        user = await run_in_threadpool(rt.data().create_user, body)
        rt.metrics.active.touch(user["id"])
        return JSONResponse(user, status_code=201)

    async def list_users(request: Request) -> Response:
        limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
        offset = int_param(request, "offset", 0, 0, 10_000)
        return json_bytes(await run_in_threadpool(rt.data().list_users, limit, offset))

    async def get_user(request: Request) -> Response:
        user_id = request.path_params["id"]
        svc = rt.data()
        data = await _one(svc.peek_user, svc.get_user, user_id)
        if data is None:
            return error(404, "not_found", "no such user")
        rt.metrics.active.touch(user_id)
        return json_bytes(data)

    async def create_item(request: Request) -> Response:
        body = await read_json(request)
        item = await run_in_threadpool(rt.data().create_item, body)
        rt.metrics.active.touch(item["owner"])
        return JSONResponse(item, status_code=201)

    async def list_items(request: Request) -> Response:
        limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
        owner = request.query_params.get("owner")
        if owner is not None and owner == "":
            raise Invalid("'owner' must not be empty", 400)
        svc = rt.data()
        data = svc.peek_items(owner, limit) if owner else None
        if data is None:
            data = await run_in_threadpool(svc.list_items, owner, limit)
        if owner:
            rt.metrics.active.touch(owner)
        return json_bytes(data)

    async def get_item(request: Request) -> Response:
        item_id = request.path_params["id"]
        svc = rt.data()
        data = await _one(svc.peek_item, svc.get_item, item_id)
        if data is None:
            return error(404, "not_found", "no such item")
        return json_bytes(data)

    routes: list[BaseRoute] = []
    if users:
        routes += [
            Route("/users", create_user, methods=["POST"]),
            Route("/users", list_users, methods=["GET"]),
            Route("/users/{id}", get_user, methods=["GET"]),
        ]
    if items:
        routes += [
            Route("/items", create_item, methods=["POST"]),
            Route("/items", list_items, methods=["GET"]),
            Route("/items/{id}", get_item, methods=["GET"]),
        ]
    return routes


def gateway_routes(rt: Runtime) -> list[BaseRoute]:
    settings = rt.settings
    assert settings.user_service_url and settings.data_service_url

    def proxy(base: str, service: str) -> Handler:
        async def forward(request: Request) -> Response:
            assert rt.gateway is not None
            headers = {
                k: v
                for k, v in request.headers.items()
                if k in {"content-type", "x-user-id", "accept", "x-request-id"}
            }
            body = await request.body() if request.method == "POST" else None
            if body is not None and len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
            try:
                upstream = await rt.gateway.request(
                    request.method,
                    base + request.url.path,
                    params=str(request.query_params),
                    content=body,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                rt.metrics.upstream_errors.labels(plan=rt.metrics.plan, service=service).inc()
                log.warning("%s unreachable: %s", service, exc)
                return error(502, "bad_gateway", f"{service} is unavailable")
            if upstream.status_code >= 500:
                rt.metrics.upstream_errors.labels(plan=rt.metrics.plan, service=service).inc()
            return Response(
                upstream.content,
                status_code=upstream.status_code,
                media_type=upstream.headers.get("content-type", JSON_TYPE),
            )

        return forward

    users = proxy(settings.user_service_url, "user-service")
    items = proxy(settings.data_service_url, "data-service")
    return [
        Route("/users", users, methods=["GET", "POST"]),
        Route("/users/{id}", users, methods=["GET"]),
        Route("/items", items, methods=["GET", "POST"]),
        Route("/items/{id}", items, methods=["GET"]),
    ]


def ops_routes(rt: Runtime) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "role": rt.settings.role})

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        ready = True
        if rt.service is not None:
            svc = rt.service

            def probe() -> None:
                if not rt.ensure_schema():
                    raise StorageUnavailable("schema not created yet")
                svc.store.ping()

            try:
                await run_in_threadpool(probe)
                checks["database"] = "ok"
            except StorageUnavailable as exc:
                checks["database"] = f"unavailable: {exc}"
                ready = False
            # Cache and queue are not readiness conditions: without them the service
            # still answers (slower, or with jobs held), so they are only reported.
            if isinstance(svc.cache, Cache):
                ok = await run_in_threadpool(svc.cache.ping)
                checks["cache"] = "ok" if ok else "degraded"
            if svc.jobs is not None:
                checks["queue"] = "ok" if svc.jobs.pending == 0 else f"{svc.jobs.pending} held"
        if rt.gateway is not None:
            for name, base in (
                ("user-service", rt.settings.user_service_url),
                ("data-service", rt.settings.data_service_url),
            ):
                try:
                    resp = await rt.gateway.get(f"{base}/readyz", timeout=2.0)
                    checks[name] = "ok" if resp.status_code == 200 else f"http {resp.status_code}"
                    ready = ready and resp.status_code == 200
                except httpx.HTTPError as exc:
                    checks[name] = f"unavailable: {exc}"
                    ready = False
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


# -- error mapping ------------------------------------------------------------------------


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    return error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


async def on_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Invalid)
    return error(exc.status, "invalid_request", str(exc))


async def on_conflict(request: Request, exc: Exception) -> Response:
    return error(409, "conflict", str(exc))


async def on_not_found(request: Request, exc: Exception) -> Response:
    # Raised when a write names a row that does not exist (an item's owner).
    return error(422, "invalid_reference", str(exc))


async def on_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("storage unavailable: %s", exc)
    metrics: Metrics = request.app.state.runtime.metrics
    metrics.db_errors.labels(plan=metrics.plan).inc()
    return error(503, "unavailable", "the database is unavailable, retry later")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal", "internal error")


def create_app(settings: Settings | None = None, metrics: Metrics | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    rt = Runtime(settings, metrics)
    role = settings.role
    routes = ops_routes(rt)
    if role == "gateway":
        routes += gateway_routes(rt)
    elif role in {"monolith", "user-service", "data-service"}:
        routes += data_routes(
            rt,
            users=role in {"monolith", "user-service"},
            items=role in {"monolith", "data-service"},
        )
    if role in {"monolith", "gateway"}:
        static = StaticFiles(directory=settings.static_dir, check_dir=False)
        routes.append(Mount("/static", app=CachedStatic(static), name="static"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: on_http_error,
            Invalid: on_invalid,
            Conflict: on_conflict,
            NotFound: on_not_found,
            StorageUnavailable: on_unavailable,
            Exception: on_unexpected,
        },
    )
    app.add_middleware(MetricsMiddleware, metrics=rt.metrics)
    app.state.runtime = rt
    return app
