"""What the API's validation says each phase runs agrees with the catalog's features.

api.py cannot import the catalog (the catalog imports it), so it names phases by number;
these tests hold those numbers to the features that say the same."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from phaseshift.api import COMPONENT_PHASES, REDIS_CLUSTER_FROM_PHASE, PhaseOverride
from phaseshift.catalog import PHASES, Database, Phase, Queue, Stream

RUNS: dict[str, Callable[[Phase], bool]] = {
    "sqlite": lambda p: p.database is Database.SQLITE,
    "postgres": lambda p: p.database.postgres,
    "redis": lambda p: p.cache.redis,
    "rabbitmq": lambda p: p.queue is Queue.RABBITMQ,
    "kafka": lambda p: p.stream is Stream.KAFKA,
    "cassandra": lambda p: p.database.cassandra,
    "edge": lambda p: p.edge.edge_cache,
    "worker": lambda p: p.queue is not Queue.NONE,
    "eventConsumer": lambda p: p.stream is not Stream.NONE,
    # The exporters stand beside PostgreSQL and Redis.
    "exporters": lambda p: p.database.postgres or p.cache.redis,
}


def phases_where(runs: Callable[[Phase], bool]) -> tuple[int, ...]:
    return tuple(n for n in sorted(PHASES) if runs(PHASES[n]))


def test_every_component_is_checked() -> None:
    assert set(COMPONENT_PHASES) == set(RUNS)


@pytest.mark.parametrize("component", sorted(RUNS))
def test_a_component_may_be_overridden_in_the_phases_that_run_it(component: str) -> None:
    assert COMPONENT_PHASES[component] == phases_where(RUNS[component])


def test_redis_nodes_may_be_set_from_the_first_phase_with_a_redis_cluster() -> None:
    clustered = phases_where(lambda p: p.cache.redis_cluster)
    assert clustered == tuple(n for n in sorted(PHASES) if n >= REDIS_CLUSTER_FROM_PHASE)
    for number in phases_where(lambda p: p.cache.redis):
        components = {"redis": {"nodes": 6}}
        if number in clustered:
            PhaseOverride.model_validate({"phase": number, "components": components})
        else:
            with pytest.raises(ValueError, match="Redis Cluster"):
                PhaseOverride.model_validate({"phase": number, "components": components})
