"""Phase 4: user-service, data-service and the API gateway replace the monolith.

Each service runs the same image in its own APP_ROLE, sized by its own HPA, with a
canary Deployment beside the stable one. The Service selects both tracks, so traffic
reaches the canary in proportion to its replicas; it has none unless a rollout of a new
image is in progress, when the stable track keeps the previous image.
"""

from __future__ import annotations

from typing import Any

from phaseshift.render.autoscaling import hpa, pdb
from phaseshift.render.scope import LABEL_TRACK, Scope
from phaseshift.render.service import port, service
from phaseshift.render.sizing import autoscale
from phaseshift.render.workload import app_container, app_deployment, rolling

SERVICES = ("user-service", "data-service", "gateway")
CANARY_REPLICAS = 1


def _image(scope: Scope, role: str) -> str:
    images = scope.override.images if scope.override and scope.override.images else {}
    return images.get(role, scope.image("app"))


def _service_objects(scope: Scope, role: str) -> list[dict[str, Any]]:
    bounds = autoscale(scope)
    assert bounds is not None, "phase 4 always autoscales"
    new_image = _image(scope, role)
    stable_image = scope.ctx.stable_image or new_image
    stable = app_deployment(
        scope,
        suffix=role,
        component=role,
        container=app_container(scope, role=role, image=stable_image),
        replicas=None,
        strategy=rolling(),
        service=role,
        extra_labels={LABEL_TRACK: "stable"},
        spread=True,
    )
    canary = app_deployment(
        scope,
        suffix=f"{role}-canary",
        component=role,
        container=app_container(scope, role=role, image=new_image),
        replicas=CANARY_REPLICAS if scope.ctx.rollout_in_progress else 0,
        strategy=rolling(),
        service=role,
        extra_labels={LABEL_TRACK: "canary"},
    )
    return [
        service(scope, role, role, scope.selector_by_service(role), [port("http", 80, "http")]),
        stable,
        canary,
        hpa(scope, role, role, bounds),
        pdb(scope, role, role, scope.selector(role, **{LABEL_TRACK: "stable"})),
    ]


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.phase < 4:
        return []
    return [obj for role in SERVICES for obj in _service_objects(scope, role)]
