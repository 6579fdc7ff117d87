"""A synthetic exporter: the sample app's load series, with values a test sets.

It serves app_active_users, http_requests_total and http_request_duration_seconds with
`namespace` and `plan` labels (requests and latency also with the pods' `track`) (the lab Prometheus honours target labels) from its own
registry on a free loopback port, so several can live in one test process.
"""

from __future__ import annotations

from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sample_app.metrics import LATENCY_BUCKETS


class SyntheticExporter:
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
