"""The demo's traffic model: what a topology serves under a load."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from phaseshift.lab.traffic import CALIBRATION, Topology, erlang_c, model
from sample_app.metrics import LATENCY_BUCKETS

PHASE_1 = Topology(app_cores=1)
PHASE_2 = Topology(app_cores=4, cache=True, sqlite=False, db_instances=3)
PHASE_3 = Topology(
    app_cores=6,
    app_autoscale_max_cores=40,
    cache=True,
    edge=True,
    queue=True,
    sqlite=False,
    db_instances=4,
)
SLO = CALIBRATION.slo_p95_seconds

users = st.floats(min_value=1, max_value=2_000_000)
cores = st.floats(min_value=0.5, max_value=64)


def test_phase_1_meets_the_slo_at_its_own_load() -> None:
    served = model(500, PHASE_1)
    assert served.p95_seconds < SLO
    assert served.error_rate == 0


def test_phase_1_at_100k_users_breaches_the_slo_and_sheds() -> None:
    served = model(100_000, PHASE_1)
    assert served.p95_seconds > SLO
    assert served.error_rate > 0.5


def test_each_phase_serves_the_load_it_is_promoted_into() -> None:
    assert model(100_000, PHASE_2).p95_seconds < SLO
    assert model(1_000_000, PHASE_3).p95_seconds < SLO
    assert model(1_000_000, PHASE_2).p95_seconds > SLO


def test_the_cache_takes_reads_off_the_database() -> None:
    without = model(20_000, Topology(app_cores=4, sqlite=False, db_instances=1))
    with_cache = model(20_000, Topology(app_cores=4, sqlite=False, db_instances=1, cache=True))
    assert with_cache.db_utilization < without.db_utilization / 3
    assert with_cache.p95_seconds < without.p95_seconds


def test_no_ready_app_pod_fails_every_request() -> None:
    served = model(100, Topology(app_cores=0))
    assert served.error_rate == 1
    assert served.p95_seconds >= CALIBRATION.timeout_seconds


def test_histogram_buckets_are_cumulative_fractions_matching_p95() -> None:
    served = model(5_000, PHASE_1, LATENCY_BUCKETS)
    fractions = [f for _, f in served.buckets]
    assert fractions == sorted(fractions)
    assert all(0 <= f <= 1 for f in fractions)
    below = [le for le, f in served.buckets if f >= 0.95]
    above = [le for le, f in served.buckets if f < 0.95]
    assert max(above) <= served.p95_seconds <= min(below)


def test_erlang_c_bounds() -> None:
    assert erlang_c(4, 0) == 0
    assert erlang_c(4, 4) == 1
    assert 0 < erlang_c(4, 2) < erlang_c(4, 3) < 1
    assert erlang_c(1, 0.5) == 0.5  # M/M/1: P(wait) = rho


@given(users, cores, st.floats(min_value=1.1, max_value=8))
def test_more_app_cores_never_raise_p95(n: float, base: float, factor: float) -> None:
    small = model(n, Topology(app_cores=base))
    large = model(n, Topology(app_cores=base * factor))
    assert large.p95_seconds <= small.p95_seconds * (1 + 1e-6)
    assert large.error_rate <= small.error_rate + 1e-9


# Fixed sizes: an autoscaled tier may add cores as load grows and get faster.
FIXED = [PHASE_1, PHASE_2, Topology(app_cores=6, cache=True, edge=True, sqlite=False)]


@given(users, st.floats(min_value=1.01, max_value=10), st.sampled_from(FIXED))
def test_more_users_never_lower_p95_or_errors(n: float, factor: float, topology: Topology) -> None:
    low, high = model(n, topology), model(n * factor, topology)
    assert high.p95_seconds >= low.p95_seconds * (1 - 1e-6)
    assert high.error_rate >= low.error_rate - 1e-9
    assert high.rps > low.rps


@given(users)
def test_a_cache_never_adds_database_load(n: float) -> None:
    base = Topology(app_cores=8, sqlite=False, db_instances=2)
    cached = Topology(app_cores=8, sqlite=False, db_instances=2, cache=True)
    assert model(n, cached).db_utilization <= model(n, base).db_utilization
