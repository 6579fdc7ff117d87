"""Prometheus series the operator's signals are built from.

Each service instance owns its registry, so every exported series carries the
`plan` label (the default registry's process collectors would not) and several
instances can live in one process (tests, the local demo).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets tuned for a web service: the operator's p95 signal needs resolution
# between 5 ms and 1 s, where phase thresholds sit.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ActiveUsers:
    """Distinct users seen within a sliding window.

    A dict of user -> last seen is enough: it is pruned on every scrape and bounded,
    so a flood of made-up user ids cannot grow it without limit.
    """

    def __init__(self, window_seconds: float, max_tracked: int = 1_000_000) -> None:
        self.window = window_seconds
        self.max_tracked = max_tracked
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def touch(self, user_id: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if user_id not in self._seen and len(self._seen) >= self.max_tracked:
                self._prune(now)
                if len(self._seen) >= self.max_tracked:
                    return
            self._seen[user_id] = now

    def count(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(now)
            return len(self._seen)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        stale = [user for user, seen in self._seen.items() if seen < horizon]
        for user in stale:
            del self._seen[user]


class Metrics:
    def __init__(self, plan: str, active_window_seconds: float = 300.0) -> None:
        self.plan = plan
        self.registry = CollectorRegistry(auto_describe=True)
        self.active = ActiveUsers(active_window_seconds)
        self._before_scrape: list[Callable[[], None]] = []
        r = self.registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status code.",
            ["plan", "route", "method", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["plan", "route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.active_users = Gauge(
            "app_active_users", "Distinct users seen in the sliding window.", ["plan"], registry=r
        )
        self.cache_hits = Counter("cache_hits", "Cache hits.", ["plan"], registry=r)
        self.cache_local_hits = Counter(
            "cache_local_hits",
            "Cache hits served from the process's own memory (also counted in cache_hits).",
            ["plan"],
            registry=r,
        )
        self.cache_misses = Counter("cache_misses", "Cache misses.", ["plan"], registry=r)
        self.cache_errors = Counter(
            "cache_errors",
            "Cache operations that failed; the request fell back.",
            ["plan"],
            registry=r,
        )
        self.cache_invalidations_owed = Gauge(
            "cache_invalidations_owed",
            "Cache keys written while Redis could not be reached, invalidated once it is back.",
            ["plan"],
            registry=r,
        )
        self.cache_up = Gauge(
            "cache_up",
            "1 while the cache answers, 0 while requests bypass it.",
            ["plan"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "queue_depth",
            "Jobs waiting in the work queue, as last observed.",
            ["plan"],
            registry=r,
        )
        self.queue_published = Counter(
            "queue_published", "Jobs handed to the message queue.", ["plan"], registry=r
        )
        self.queue_publish_errors = Counter(
            "queue_publish_errors",
            "Job publishes that failed and were kept for a later retry.",
            ["plan"],
            registry=r,
        )
        self.queue_pending = Gauge(
            "queue_outbox_pending",
            "Jobs held locally until the queue accepts them.",
            ["plan"],
            registry=r,
        )
        self.jobs = Counter(
            "worker_jobs",
            "Jobs handled by the worker, by outcome.",
            ["plan", "outcome"],
            registry=r,
        )
        self.db_queries = Counter(
            "db_queries",
            "Database statements by target (primary, replica, shard).",
            ["plan", "target"],
            registry=r,
        )
        self.db_errors = Counter(
            "db_errors", "Database operations that failed.", ["plan"], registry=r
        )
        self.events_published = Counter(
            "events_published", "Events delivered to the event stream.", ["plan"], registry=r
        )
        self.event_errors = Counter(
            "events_publish_errors",
            "Events that could not be delivered to the stream.",
            ["plan"],
            registry=r,
        )
        self.events_consumed = Counter(
            "events_consumed",
            "Events the consumer handled, by event type (invalid: could never be handled).",
            ["plan", "type"],
            registry=r,
        )
        self.event_consume_errors = Counter(
            "events_consume_errors",
            "Consumer failures to reach the stream or commit its offsets; each is retried.",
            ["plan"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "events_consumer_lag",
            "Events on the consumer's partitions not yet handled, as last observed.",
            ["plan"],
            registry=r,
        )
        self.feed_writes = Counter(
            "feed_writes",
            "Activity feed rows the consumer wrote to Cassandra.",
            ["plan"],
            registry=r,
        )
        self.feed_errors = Counter(
            "feed_errors",
            "Activity feed operations Cassandra did not serve: a write is retried, a read "
            "answered 503.",
            ["plan"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Gateway calls to a service that failed.",
            ["plan", "service"],
            registry=r,
        )
        # Touch the unlabelled-by-outcome series so they exist (at zero) from the
        # first scrape: rate() over a series that appears late misses its first hit.
        for counter in (
            self.cache_hits,
            self.cache_local_hits,
            self.cache_misses,
            self.cache_errors,
            self.queue_published,
            self.queue_publish_errors,
            self.db_errors,
            self.events_published,
            self.event_errors,
            self.feed_writes,
            self.feed_errors,
        ):
            counter.labels(plan=plan)
        self.active_users.labels(plan=plan).set(0)
        self.queue_depth.labels(plan=plan).set(0)
        self.cache_up.labels(plan=plan).set(0)
        self.queue_pending.labels(plan=plan).set(0)

    def on_scrape(self, hook: Callable[[], None]) -> None:
        self._before_scrape.append(hook)

    def render(self) -> bytes:
        self.active_users.labels(plan=self.plan).set(self.active.count())
        for hook in self._before_scrape:
            hook()
        return generate_latest(self.registry)

    # Small helpers so call sites do not repeat the plan label.
    def hit(self) -> None:
        self.cache_hits.labels(plan=self.plan).inc()

    def miss(self) -> None:
        self.cache_misses.labels(plan=self.plan).inc()

    def cache_error(self) -> None:
        self.cache_errors.labels(plan=self.plan).inc()

    def query(self, target: str) -> None:
        self.db_queries.labels(plan=self.plan, target=target).inc()
