"""The app's per-phase size and autoscaling, from the catalog, spec.app and overrides."""

from __future__ import annotations

import math
from dataclasses import replace

from phaseshift.api import MAX_CANARY_WEIGHT, Resources
from phaseshift.catalog import Application, Autoscale, Size
from phaseshift.render.quantity import parse_quantity
from phaseshift.render.scope import Scope

_FIELDS = (
    ("cpu", "requests", "cpu"),
    ("memory", "requests", "memory"),
    ("cpu_limit", "limits", "cpu"),
    ("memory_limit", "limits", "memory"),
)


def _merge(size: Size, resources: Resources | None, *, keep_larger: bool) -> Size:
    if resources is None:
        return size
    changes: dict[str, str] = {}
    for attr, group, key in _FIELDS:
        values = getattr(resources, group)
        value = getattr(values, key) if values is not None else None
        if value is None:
            continue
        if keep_larger and parse_quantity(value) < parse_quantity(getattr(size, attr)):
            continue
        changes[attr] = value
    return _consistent(replace(size, **changes), changes)


def _consistent(size: Size, changed: dict[str, str]) -> Size:
    """A default that would fall on the wrong side of a value the plan set moves with it:
    a request set above the default limit raises the limit, a limit set below the
    default request lowers the request. Two values the plan set are left as written."""
    for request, limit in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
        low, high = getattr(size, request), getattr(size, limit)
        if parse_quantity(low) <= parse_quantity(high):
            continue
        if request in changed and limit not in changed:
            size = replace(size, **{limit: low})
        elif limit in changed and request not in changed:
            size = replace(size, **{request: high})
    return size


def merge_size(size: Size, resources: Resources | None) -> Size:
    """`size` with every value `resources` sets (a component override)."""
    return _merge(size, resources, keep_larger=False)


def app_size(scope: Scope) -> Size:
    """spec.app.resources is the base size of one replica; phase 2 scales up vertically,
    so there it never shrinks the catalog's larger size. An override always wins."""
    size = _merge(
        scope.catalog.app_size,
        scope.plan.spec.app.resources,
        keep_larger=scope.catalog.application is Application.VERTICAL_MONOLITH,
    )
    if scope.override is not None:
        size = _merge(size, scope.override.app_resources, keep_larger=False)
    return size


def app_replicas(scope: Scope) -> int:
    if scope.override is not None and scope.override.app_replicas is not None:
        return scope.override.app_replicas
    return scope.catalog.app_replicas


def autoscale(scope: Scope) -> Autoscale | None:
    """The HPA bounds of a horizontally scaled phase; an appReplicas override raises the
    floor when the override does not set minReplicas itself."""
    default = scope.catalog.autoscale
    if default is None:
        return None
    override = scope.override
    hpa = override.hpa if override is not None else None
    floor = default.min_replicas
    if override is not None and override.app_replicas:
        floor = override.app_replicas
    if hpa is not None and hpa.min_replicas is not None:
        floor = hpa.min_replicas
    ceiling = hpa.max_replicas if hpa is not None and hpa.max_replicas is not None else None
    target = default.target_cpu_percent
    if hpa is not None and hpa.target_cpu_utilization_percentage is not None:
        target = hpa.target_cpu_utilization_percentage
    if ceiling is None:
        ceiling = max(default.max_replicas, floor)
    return Autoscale(min(floor, ceiling), ceiling, target)


def read_replicas(scope: Scope) -> int:
    if scope.override is not None and scope.override.read_replicas is not None:
        return scope.override.read_replicas
    return scope.catalog.read_replicas


def shards(scope: Scope) -> int:
    """Shards are a horizontal-phase choice; 0 means the plan asks for none."""
    if (
        not scope.catalog.database.shardable
        or scope.override is None
        or scope.override.shards is None
    ):
        return 0
    return scope.override.shards


def canary_replicas(stable_replicas: int, weight_percent: int) -> int:
    """Canary pods that take `weight_percent` of the traffic beside `stable_replicas`, when
    a Service spreads requests evenly over the pods of both tracks."""
    weight = min(max(weight_percent, 1), MAX_CANARY_WEIGHT)
    return max(1, math.ceil(stable_replicas * weight / (100 - weight)))
