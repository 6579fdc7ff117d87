"""The demo's traffic model: offered load + live topology -> RPS, latency, errors.

kwok runs no containers, so the demo's application pods serve nothing. This pure module
stands in for them: given how many users are active and what the plan's topology is
right now (app replicas and cores, cache, database replicas, edge cache, queue), it says
what that topology would serve. Each tier is an M/M/c queue (Erlang C); a request's
latency is the sum of the tiers on its path; a tier past saturation sheds the excess as
503s that took the client's timeout. All calibration lives in `Calibration`, below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Calibration:
    """Every constant of the model, with where it comes from.

    bench/sample_app.py on this (loaded) machine: one app process serves ~180-200 RPS of
    the read-heavy mix with p50 ~100 ms at 32 concurrent users (mostly queueing: Little's
    law gives ~5 ms of work per request), and the cached read path is 2-4x faster than
    the uncached one. The rest are the usual web-shop ratios, stated here so they can be
    changed in one place.
    """

    requests_per_user_per_second: float = 0.01
    """sample_app counts a user active for 5 minutes after a request; ~3 requests each."""
    read_fraction: float = 0.9
    """Share of requests that are reads (catalogue, product pages)."""
    app_rps_per_core: float = 190.0
    """bench/sample_app.py: 180-200 RPS per app process (one core), uncached mix."""
    app_base_seconds: float = 0.02
    """Median time in the handler of an unqueued uncached request."""
    cached_read_speedup: float = 3.0
    """bench/sample_app.py: the cached read path is 2-4x faster than the uncached one."""
    cache_hit_ratio: float = 0.85
    """Share of reads the Redis cache answers (phase 2 on)."""
    edge_hit_ratio: float = 0.5
    """Share of reads the edge cache answers before the app (phase 3 on)."""
    edge_seconds: float = 0.004
    db_queries_per_second: float = 1_500.0
    """Capacity of one PostgreSQL instance (primary or read replica) for the app's queries."""
    sqlite_queries_per_second: float = 600.0
    """SQLite on one volume: a single writer, reads in the same process."""
    db_base_seconds: float = 0.005
    async_write_fraction: float = 0.8
    """With a queue or stream, the share of writes acknowledged after enqueueing."""
    enqueue_seconds: float = 0.002
    service_spread: float = 2.5
    """p95 / p50 of a stage's own service time (no queueing)."""
    timeout_seconds: float = 5.0
    """Clients give up after this; a shed request is a 503 observed at this latency."""
    slo_p95_seconds: float = 0.25
    """examples/shop.yaml keeps the API default observability.sloLatencySeconds."""


CALIBRATION = Calibration()


@dataclass(frozen=True)
class Topology:
    """What the plan runs now, as read from the API server."""

    app_cores: float = 1.0
    """Sum over serving app pods of their CPU (limit, else request) in cores."""
    app_autoscale_max_cores: float = 0.0
    """With an HPA: the cores its maxReplicas allow; the model plays the HPA's part."""
    app_autoscale_target: float = 0.7
    cache: bool = False
    edge: bool = False
    queue: bool = False
    sqlite: bool = True
    db_instances: int = 1
    """PostgreSQL primary + read replicas (+ NoSQL nodes); ignored for SQLite."""


@dataclass(frozen=True)
class Traffic:
    """What the topology serves under the offered load, per second."""

    users: float
    rps: float
    error_rate: float
    p50_seconds: float
    p95_seconds: float
    app_utilization: float
    db_utilization: float
    app_cores_used: float
    buckets: tuple[tuple[float, float], ...] = field(default=())
    """(le, cumulative fraction of requests) for each histogram bucket."""


@dataclass(frozen=True)
class _Stage:
    """Queueing delay of one tier (median and p95) and the share of requests it sheds."""

    wait50: float
    wait95: float
    shed: float


@dataclass(frozen=True)
class _Class:
    weight: float
    p50: float
    p95: float
    shed: float


def erlang_c(servers: int, offered: float) -> float:
    """Probability an arrival waits in an M/M/c queue with `offered` = lambda/mu Erlangs."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    b = 1.0  # Erlang B by its stable recurrence
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1 - rho * (1 - b))


def _queue(arrivals: float, servers: float, per_server: float, cal: Calibration) -> _Stage:
    """One tier: M/M/c with fractional servers rounded up (a partial core still serves)."""
    capacity = servers * per_server
    if capacity <= 0:
        # Nothing serves (no Ready pod, e.g. mid-switch): every request fails at the timeout.
        return _Stage(cal.timeout_seconds, cal.timeout_seconds, 1.0 if arrivals > 0 else 0.0)
    c = max(1, math.ceil(servers - 1e-9))
    shed = 0.0
    if arrivals >= capacity * 0.98:
        # Past saturation the queue is as long as clients tolerate; the excess is shed.
        shed = max(0.0, 1.0 - capacity * 0.98 / arrivals)
        return _Stage(cal.timeout_seconds * 0.6, cal.timeout_seconds, shed)
    offered = arrivals / per_server * (c / servers)
    waits = erlang_c(c, offered)
    drain = c * per_server - arrivals * (c / servers)
    w50 = max(0.0, math.log(waits / 0.5)) / drain if waits > 0.5 else 0.0
    w95 = max(0.0, math.log(waits / 0.05)) / drain if waits > 0.05 else 0.0
    return _Stage(w50, w95, shed)


def app_cores_needed(topology: Topology, arrivals: float, per_core: float) -> float:
    """Cores the app runs on: fixed, or what its HPA would scale to (kwok has no metrics
    pipeline, so the HPA never sees CPU; the model sizes the tier as the HPA would)."""
    if topology.app_autoscale_max_cores <= topology.app_cores:
        return topology.app_cores
    wanted = arrivals / (per_core * topology.app_autoscale_target)
    return min(topology.app_autoscale_max_cores, max(topology.app_cores, wanted))


def _lognormal_cdf(x: float, p50: float, p95: float) -> float:
    if x <= 0:
        return 0.0
    sigma = max(1e-6, math.log(max(p95, p50 * 1.0001) / p50) / 1.6448536)
    return 0.5 * (1 + math.erf(math.log(x / p50) / (sigma * math.sqrt(2))))


def _mixture_cdf(x: float, classes: Sequence[_Class], cal: Calibration) -> float:
    total = 0.0
    for c in classes:
        served = c.weight * (1 - c.shed)
        total += served * _lognormal_cdf(x, c.p50, c.p95)
        if x >= cal.timeout_seconds:
            total += c.weight * c.shed
    return total


def _quantile(q: float, classes: Sequence[_Class], cal: Calibration) -> float:
    lo, hi = 1e-5, cal.timeout_seconds * 1.01
    if _mixture_cdf(cal.timeout_seconds * 0.999, classes, cal) < q:
        return cal.timeout_seconds
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if _mixture_cdf(mid, classes, cal) < q:
            lo = mid
        else:
            hi = mid
    return hi


def model(
    users: float,
    topology: Topology,
    buckets: Sequence[float] = (),
    cal: Calibration = CALIBRATION,
) -> Traffic:
    """What `topology` serves to `users` active users."""
    rps = max(0.0, users) * cal.requests_per_user_per_second
    reads, writes = rps * cal.read_fraction, rps * (1 - cal.read_fraction)
    edge_hits = reads * cal.edge_hit_ratio if topology.edge else 0.0
    app_reads = reads - edge_hits
    cache_hits = app_reads * cal.cache_hit_ratio if topology.cache else 0.0
    # A cached read costs the app a fraction of an uncached request's CPU.
    app_work = (app_reads - cache_hits) + writes + cache_hits / cal.cached_read_speedup
    app_arrivals = app_reads + writes
    per_core = cal.app_rps_per_core * (app_arrivals / app_work) if app_work > 0 else 1.0
    cores = app_cores_needed(topology, app_arrivals, per_core)
    app = _queue(app_arrivals, cores, per_core, cal)

    sync_writes = writes * (1 - cal.async_write_fraction) if topology.queue else writes
    db_arrivals = (app_reads - cache_hits) + sync_writes
    if topology.sqlite:
        db_servers, db_rate = 1.0, cal.sqlite_queries_per_second
    else:
        db_servers, db_rate = float(max(1, topology.db_instances)), cal.db_queries_per_second
    db = _queue(db_arrivals, db_servers, db_rate, cal)

    # Each request class: (median, p95) summed over the stages on its path.
    spread = cal.service_spread
    uncached = (cal.app_base_seconds + app.wait50, cal.app_base_seconds * spread + app.wait95)
    cached = (
        uncached[0] - cal.app_base_seconds * (1 - 1 / cal.cached_read_speedup),
        uncached[1] - cal.app_base_seconds * spread * (1 - 1 / cal.cached_read_speedup),
    )
    database = (cal.db_base_seconds + db.wait50, cal.db_base_seconds * spread + db.wait95)
    enqueue = (cal.enqueue_seconds, cal.enqueue_seconds * spread)
    classes = [
        _Class(edge_hits, cal.edge_seconds, cal.edge_seconds * spread, 0.0),
        _Class(cache_hits, *cached, app.shed),
        _Class(
            (app_reads - cache_hits) + sync_writes,
            uncached[0] + database[0],
            uncached[1] + database[1],
            1 - (1 - app.shed) * (1 - db.shed),
        ),
        _Class(writes - sync_writes, uncached[0] + enqueue[0], uncached[1] + enqueue[1], app.shed),
    ]
    classes = [c for c in classes if c.weight > 0]
    if not classes:
        idle = tuple((le, 0.0) for le in buckets)
        return Traffic(users, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, cores, idle)
    total = sum(c.weight for c in classes)
    classes = [_Class(c.weight / total, c.p50, c.p95, c.shed) for c in classes]
    error_rate = sum(c.weight * c.shed for c in classes)
    return Traffic(
        users=users,
        rps=rps,
        error_rate=error_rate,
        p50_seconds=_quantile(0.5, classes, cal),
        p95_seconds=_quantile(0.95, classes, cal),
        app_utilization=app_arrivals / (cores * per_core) if cores > 0 else math.inf,
        db_utilization=db_arrivals / (db_servers * db_rate),
        app_cores_used=cores,
        buckets=tuple((le, _mixture_cdf(le, classes, cal)) for le in buckets),
    )
