"""Pure builders: (ScalePlan, phase) -> desired Kubernetes objects, one module per component.

Nothing here talks to a server: the same plan, phase and context always give the same
objects, which is what lets the operator compare, diff and prune them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from phaseshift.api import ScalePlan
from phaseshift.catalog import FIRST_POSTGRES_PHASE, PHASES
from phaseshift.render import (
    appconfig,
    cassandra,
    consumer,
    edge,
    exposure,
    kafka,
    microservices,
    monitoring,
    monolith,
    postgres,
    rabbitmq,
    redis,
    sqlite,
    worker,
)
from phaseshift.render.context import RenderContext
from phaseshift.render.keys import object_key
from phaseshift.render.migration import migration_job, thaw_job
from phaseshift.render.order import apply_order
from phaseshift.render.scope import Scope
from phaseshift.render.totals import resource_totals

__all__ = [
    "RenderContext",
    "object_key",
    "render_migration_job",
    "render_phase",
    "render_thaw_job",
    "resource_totals",
]

# Each builder returns what its component contributes in the scope's phase (often nothing).
_BUILDERS: tuple[Callable[[Scope], list[dict[str, Any]]], ...] = (
    appconfig.objects,
    sqlite.objects,
    postgres.objects,
    cassandra.objects,
    redis.objects,
    rabbitmq.objects,
    kafka.objects,
    monolith.objects,
    microservices.objects,
    worker.objects,
    consumer.objects,
    edge.objects,
    exposure.objects,
    monitoring.objects,
)


def render_phase(plan: ScalePlan, phase: int, ctx: RenderContext) -> list[dict[str, Any]]:
    """Every object `plan` runs in `phase`, in apply order."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)}, got {phase}")
    scope = Scope(plan, phase, ctx)
    return apply_order([obj for build in _BUILDERS for obj in build(scope)])


def render_migration_job(plan: ScalePlan, ctx: RenderContext, attempt: str) -> dict[str, Any]:
    """The Job that copies phase 1's SQLite database into the PostgreSQL primary of the
    first phase that runs one, freezing the phase-1 app's writes before its final pass."""
    return migration_job(Scope(plan, FIRST_POSTGRES_PHASE, ctx), attempt)


def render_thaw_job(plan: ScalePlan, ctx: RenderContext, attempt: str) -> dict[str, Any]:
    """The Job that opens phase 1's SQLite database to writes again after an abandoned
    migration."""
    return thaw_job(Scope(plan, FIRST_POSTGRES_PHASE, ctx), attempt)
