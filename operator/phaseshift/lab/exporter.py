"""The sample app's metrics as scrape targets, each from a registry of its own on 127.0.0.1.

TrafficExporter is the traffic model, for the demo's plan. A background thread advances
the model: every tick it reads the plan's live topology from the API server (at most once
a second), asks `traffic.model` what that topology serves to the current users, and adds
the tick's requests to counters and histogram buckets. A custom collector exposes them
under sample_app's metric names, so Prometheus scrapes it like the real app.

SyntheticExporter serves the same series with the values a test or a bench sets.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from phaseshift.kube import Kube
from phaseshift.lab.topology import topology_of
from phaseshift.lab.traffic import Topology, Traffic, model
from sample_app.metrics import LATENCY_BUCKETS

TICK_SECONDS = 0.25
TOPOLOGY_EVERY_SECONDS = 1.0


@dataclass
class _Totals:
    ok: float = 0.0
    errors: float = 0.0
    latency_sum: float = 0.0
    buckets: list[float] | None = None


class _Collector(Collector):
    def __init__(self, exporter: TrafficExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        e = self.exporter
        labels = [e.namespace, e.plan]
        with e.lock:
            users = e.latest.users if e.latest else 0.0
            totals = _Totals(e.totals.ok, e.totals.errors, e.totals.latency_sum)
            cumulative = list(e.totals.buckets or [0.0] * len(LATENCY_BUCKETS))
        gauge = GaugeMetricFamily(
            "app_active_users", "Active users (modelled).", labels=["namespace", "plan"]
        )
        gauge.add_metric(labels, users)
        yield gauge
        requests = CounterMetricFamily(
            "http_requests_total", "Requests (modelled).", labels=["namespace", "plan", "code"]
        )
        requests.add_metric([*labels, "200"], totals.ok)
        requests.add_metric([*labels, "503"], totals.errors)
        yield requests
        count = totals.ok + totals.errors
        histogram = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Request latency (modelled).",
            labels=["namespace", "plan"],
        )
        histogram.add_metric(
            labels,
            [(str(le), c) for le, c in zip(LATENCY_BUCKETS, cumulative, strict=True)]
            + [("+Inf", count)],
            totals.latency_sum,
        )
        yield histogram


class TrafficExporter:
    """Serves the model's metrics for one plan; `users()` gives the offered load now."""

    def __init__(self, kube: Kube, namespace: str, plan: str, users: Callable[[], float]) -> None:
        self.kube = kube
        self.namespace = namespace
        self.plan = plan
        self.users = users
        self.lock = threading.Lock()
        self.totals = _Totals(buckets=[0.0] * len(LATENCY_BUCKETS))
        self.latest: Traffic | None = None
        self.topology = Topology()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic-model", daemon=True)
        self._server, self._server_thread = start_http_server(
            0, addr="127.0.0.1", registry=self.registry
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def _read_topology(self) -> None:
        with contextlib.suppress(Exception):
            self.topology = topology_of(self.kube.list_managed(self.namespace, self.plan))

    def step(self, seconds: float) -> Traffic:
        """Advances the counters by `seconds` of traffic at the current users and topology."""
        traffic = model(self.users(), self.topology, LATENCY_BUCKETS)
        served = traffic.rps * seconds
        with self.lock:
            self.latest = traffic
            self.totals.ok += served * (1 - traffic.error_rate)
            self.totals.errors += served * traffic.error_rate
            # p50 is a fair stand-in for the mean of each tick's requests.
            self.totals.latency_sum += served * traffic.p50_seconds
            buckets = self.totals.buckets or []
            for i, (_, fraction) in enumerate(traffic.buckets):
                buckets[i] += served * fraction
        return traffic

    def _run(self) -> None:
        last_topology = 0.0
        last = time.monotonic()
        while not self._stop.wait(TICK_SECONDS):
            now = time.monotonic()
            if now - last_topology >= TOPOLOGY_EVERY_SECONDS:
                self._read_topology()
                last_topology = now
            self.step(now - last)
            last = now

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.shutdown()
        self._server.server_close()
        self._server_thread.join(timeout=5)


class SyntheticExporter:
    """app_active_users, http_requests_total and http_request_duration_seconds with
    `namespace` and `plan` labels (requests and latency also with the pods' `track`; the lab
    Prometheus honours target labels), on a free loopback port, so several can live in one
    process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["namespace", "plan"]
        self.active_users = Gauge(
            "app_active_users", "Active users, as the test sets them.", labels,
            registry=self.registry,
        )  # fmt: skip
        self.requests = Counter(
            "http_requests_total", "Requests, as the test counts them.",
            [*labels, "track", "code"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "http_request_duration_seconds", "Latency, as the test observes it.",
            [*labels, "track"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def set_users(self, namespace: str, plan: str, users: float) -> None:
        self.active_users.labels(namespace=namespace, plan=plan).set(users)

    def count_requests(
        self, namespace: str, plan: str, n: int, code: str = "200", track: str = "stable"
    ) -> None:
        self.requests.labels(namespace=namespace, plan=plan, track=track, code=code).inc(n)

    def observe_latency(
        self, namespace: str, plan: str, seconds: float, n: int = 1, track: str = "stable"
    ) -> None:
        histogram = self.duration.labels(namespace=namespace, plan=plan, track=track)
        for _ in range(n):
            histogram.observe(seconds)

    def forget(self, namespace: str, plan: str) -> None:
        """Stop exporting the plan's gauge, as if its app went away."""
        self.active_users.remove(namespace, plan)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SyntheticExporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
