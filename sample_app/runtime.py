"""What a role's endpoints share, kept on `app.state.runtime` for the life of the app.

The data roles (monolith, user-service, data-service) hold a DataService over the
store, cache, job queue and event stream the settings name, and those serving
/users/{id}/activity the activity feed when Cassandra is configured; the gateway holds
an HTTP client for the two services it fronts. Each starts and stops its own connections and
says whether it is ready.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import httpx
from starlette.concurrency import run_in_threadpool

from .cache import Cache, open_cache
from .config import Settings
from .events import EventPublisher
from .feed import ActivityFeed
from .metrics import Metrics
from .queue import JobPublisher
from .service import DataService
from .storage import StorageUnavailable, open_store

# How long readiness waits for the cache's answer before reporting it degraded.
CACHE_CHECK_SECONDS = 0.5

log = logging.getLogger(__name__)

# Readiness: whether the role may take traffic, and what each of its checks found.
Readiness = tuple[bool, dict[str, str]]
# The roles that serve /users/{id}/activity from the activity feed.
FEED_ROLES = frozenset({"monolith", "data-service"})


class Runtime(Protocol):
    settings: Settings
    metrics: Metrics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def readiness(self) -> Readiness: ...


class DataRuntime:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        store = open_store(settings, on_query=metrics.query)
        jobs = JobPublisher(settings.queue_url, metrics) if settings.queue_url else None
        events = (
            EventPublisher(settings.kafka_bootstrap, metrics) if settings.kafka_bootstrap else None
        )
        self.service = DataService(
            settings, store, metrics, open_cache(settings, metrics), jobs, events
        )
        # Connects on first use: the role starts, and serves the rest, without Cassandra.
        self.feed = ActivityFeed.from_settings(settings) if settings.role in FEED_ROLES else None
        self.schema_ready = False

    def ensure_schema(self) -> bool:
        """Create the schema unless done already; False while the database cannot be
        reached (readiness retries it)."""
        if self.schema_ready:
            return True
        try:
            self.service.store.ensure_schema()
        except StorageUnavailable as exc:
            log.warning("database not reachable yet: %s", exc)
            return False
        self.schema_ready = True
        return True

    async def start(self) -> None:
        await run_in_threadpool(self.ensure_schema)
        if self.service.jobs is not None:
            self.service.jobs.start()
        if self.service.events is not None:
            self.service.events.start()

    async def stop(self) -> None:
        svc = self.service
        if svc.jobs is not None:
            await run_in_threadpool(svc.jobs.stop)
        if svc.events is not None:
            await run_in_threadpool(svc.events.stop)
        svc.cache.close()
        svc.store.close()
        if self.feed is not None:
            await run_in_threadpool(self.feed.close)

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        svc = self.service

        def probe() -> None:
            if not self.ensure_schema():
                raise StorageUnavailable("schema not created yet")
            svc.store.ping()

        ready = True
        try:
            await run_in_threadpool(probe)
            checks["database"] = "ok"
        except StorageUnavailable as exc:
            checks["database"] = f"unavailable: {exc}"
            ready = False
        # Cache and queue are not readiness conditions: without them the service still
        # answers (slower, or with jobs held), so they are only reported.
        if isinstance(svc.cache, Cache):
            # Bounded: a Redis Cluster whose nodes all moved keeps its client retrying
            # for seconds, and a probe that waits for it would take the pod out of its
            # Service for want of a cache it does not need.
            try:
                ok = await asyncio.wait_for(run_in_threadpool(svc.cache.ping), CACHE_CHECK_SECONDS)
            except TimeoutError:
                ok = False
            checks["cache"] = "ok" if ok else "degraded"
        if svc.jobs is not None:
            checks["queue"] = "ok" if svc.jobs.pending == 0 else f"{svc.jobs.pending} held"
        # Nor is the feed: without it only /users/{id}/activity fails (503).
        if self.feed is not None:
            ok = await run_in_threadpool(self.feed.available)
            checks["feed"] = "ok" if ok else "unavailable"
        return ready, checks


class GatewayRuntime:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        # Settings.from_env refuses a gateway without both URLs.
        assert settings.user_service_url and settings.data_service_url
        self.settings = settings
        self.metrics = metrics
        self.upstreams = {
            "user-service": settings.user_service_url,
            "data-service": settings.data_service_url,
        }
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self.client.aclose()

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        ready = True
        for name, base in self.upstreams.items():
            try:
                resp = await self.client.get(f"{base}/readyz", timeout=2.0)
                checks[name] = "ok" if resp.status_code == 200 else f"http {resp.status_code}"
                ready = ready and resp.status_code == 200
            except httpx.HTTPError as exc:
                checks[name] = f"unavailable: {exc}"
                ready = False
        return ready, checks

    def upstream_failed(self, service: str) -> None:
        self.metrics.upstream_errors.labels(plan=self.metrics.plan, service=service).inc()
