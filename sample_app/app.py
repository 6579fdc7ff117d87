"""The ASGI application: the same image serves every role of every phase.

Roles: monolith (all routes), user-service (/users), data-service (/items and
/users/{id}/activity), gateway (proxies those to the two services, serves /static).
Every role serves /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from .config import Settings
from .endpoints import data, feed, gateway, ops
from .endpoints.errors import HANDLERS
from .metrics import Metrics
from .middleware import CachedStatic, MetricsMiddleware
from .runtime import FEED_ROLES, DataRuntime, GatewayRuntime, Runtime


def role_routes(settings: Settings) -> list[BaseRoute]:
    role = settings.role
    routes = list(ops.ROUTES)
    if role == "gateway":
        routes += gateway.ROUTES
    if role in {"monolith", "user-service"}:
        routes += data.USER_ROUTES
    if role in {"monolith", "data-service"}:
        routes += data.ITEM_ROUTES
    if role in FEED_ROLES:
        routes += feed.ROUTES
    if role in {"monolith", "gateway"}:
        static = StaticFiles(directory=settings.static_dir, check_dir=False)
        routes.append(Mount("/static", app=CachedStatic(static), name="static"))
    return routes


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    await runtime.start()
    try:
        yield
    finally:
        await runtime.stop()


def create_app(settings: Settings | None = None, metrics: Metrics | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    metrics = metrics or Metrics(settings.plan, settings.active_user_window_seconds)
    runtime: Runtime
    if settings.role == "gateway":
        runtime = GatewayRuntime(settings, metrics)
    else:
        runtime = DataRuntime(settings, metrics)
    app = Starlette(routes=role_routes(settings), lifespan=lifespan, exception_handlers=HANDLERS)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.runtime = runtime
    return app
