"""Benchmark: signals and decisions for many plans sharing one Prometheus.

    .venv/bin/python bench/policy.py [--plans 1000] [--ticks 5]

Starts a real Prometheus (the Debian package) on 127.0.0.1 scraping a synthetic exporter
that serves the sample app's series for --plans plans, waits until the signal windows are
covered, then prints, per tick:

- HTTP queries for all plans (target: the number of signals), counted twice: by the
  client's transport and by Prometheus's own prometheus_http_requests_total;
- the time to fetch every signal of every plan (median over --ticks), with the bench's
  short windows and again with the default policy's (60s promotion, 900s demotion windows);
- the time to decide for every plan from those fetched signals (target for 1,000 plans:
  < 50 ms, median of 50 runs), and what was decided.

It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter as Tally
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from phaseshift.api import DEFAULT_SIGNALS, ScalePlan, parse_plan
from phaseshift.lab.prometheus import CountingSession, PrometheusServer
from phaseshift.policy import decide
from phaseshift.promql import PlanKey, group_signals
from phaseshift.signals import fetch_signals

WINDOW = 10  # promotion and demotion windows, seconds: short, so the bench starts quickly


SHORT_WINDOWS = {
    "evaluationIntervalSeconds": 1,
    "promotion": {"stabilizationSeconds": WINDOW, "cooldownSeconds": 0},
    "demotion": {"stabilizationSeconds": WINDOW},
}


def make_plans(n: int, url: str, policy: dict[str, Any]) -> list[ScalePlan]:
    plans = []
    for i in range(n):
        plan = parse_plan(
            {
                "metadata": {"name": f"plan-{i:04d}", "namespace": f"team-{i % 10}"},
                "spec": {"metrics": {"prometheusUrl": url}, "policy": policy},
            }
        )
        # A spread of phases, so promotions, holds and demotions are all decided.
        status = plan.status.model_copy(update={"phase": 1 + i % 3})
        plans.append(plan.model_copy(update={"status": status}))
    return plans


def serve_load(plans: list[ScalePlan]) -> tuple[Any, str]:
    registry = CollectorRegistry()
    labels = ["namespace", "plan"]
    users = Gauge("app_active_users", "users", labels, registry=registry)
    requests_total = Counter(
        "http_requests_total", "requests", [*labels, "code"], registry=registry
    )
    # Few buckets: 1,000 plans x 14 default buckets take a Python exporter longer to render
    # than the lab Prometheus's 1s scrape timeout allows on a small machine.
    latency = Histogram(
        "http_request_duration_seconds", "latency", labels, buckets=(0.05, 0.25, 1.0),
        registry=registry,
    )  # fmt: skip
    for i, plan in enumerate(plans):
        # Users from 0 to ~250k across the plans: every phase boundary is crossed somewhere.
        users.labels(plan.namespace, plan.name).set((i * 7919) % 250_000)
        requests_total.labels(plan.namespace, plan.name, "200").inc(i)
        latency.labels(plan.namespace, plan.name).observe(0.01 * (i % 50))
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    return server, f"127.0.0.1:{server.server_port}"


def query_requests_served(prometheus: PrometheusServer) -> float:
    """prometheus_http_requests_total for /api/v1/query, read from /metrics (not counted)."""
    total = 0.0
    for line in httpx.get(f"{prometheus.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        prometheus = PrometheusServer(Path(directory))
        prometheus.start()
        try:
            plans = make_plans(args.plans, prometheus.url, SHORT_WINDOWS)
            server, address = serve_load(plans)
            prometheus.add_target("bench", address)
            print(f"{args.plans} plans, {len(DEFAULT_SIGNALS)} signals each, one Prometheus")
            print(f"signal groups (queries a tick needs): {len(group_signals(plans))}")
            time.sleep(WINDOW * 1.5)  # let the windows fill

            session = CountingSession()
            client_counts, server_counts = [], []
            fetch_times: dict[str, list[float]] = {"short": [], "default": []}
            default_plans = make_plans(args.plans, prometheus.url, {})
            snapshot = {}
            for _ in range(args.ticks):
                session.requests = 0
                before = query_requests_served(prometheus)
                start = time.perf_counter()
                snapshot = fetch_signals(plans, datetime.now(UTC), client_factory=session.client)
                fetch_times["short"].append(time.perf_counter() - start)
                client_counts.append(session.requests)
                server_counts.append(query_requests_served(prometheus) - before)
                start = time.perf_counter()
                fetch_signals(default_plans, datetime.now(UTC), client_factory=session.client)
                fetch_times["default"].append(time.perf_counter() - start)
            server.shutdown()

            errors = sum(1 for s in snapshot.values() if s.errors)
            covered = sum(1 for s in snapshot.values() for r in s.readings.values() if r.covered)
            print(
                f"HTTP queries per tick: client {statistics.median(client_counts):.0f}, "
                f"Prometheus {statistics.median(server_counts):.0f} "
                f"(target: {len(DEFAULT_SIGNALS)})"
            )
            print(
                f"fetch, all plans, {WINDOW}s windows: "
                f"{statistics.median(fetch_times['short']) * 1000:.0f} ms; "
                f"default windows: {statistics.median(fetch_times['default']) * 1000:.0f} ms "
                f"(medians of {args.ticks})"
            )
            print(
                f"plans with errors: {errors}; covered readings: "
                f"{covered}/{args.plans * len(DEFAULT_SIGNALS)}"
            )

            now = datetime.now(UTC)
            decide_times = []
            decisions = []
            for _ in range(50):
                start = time.perf_counter()
                decisions = [decide(snapshot[PlanKey.of(p)], p, now) for p in plans]
                decide_times.append(time.perf_counter() - start)
            print(
                f"decide, all plans: {statistics.median(decide_times) * 1000:.1f} ms "
                f"(median of 50; target < 50 ms for 1,000)"
            )
            reasons = Tally(str(d.reason) for d in decisions)
            print("decisions: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
        finally:
            prometheus.stop()


if __name__ == "__main__":
    main()
