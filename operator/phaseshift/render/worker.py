"""Workers that consume the job queue (phase 3+), the same image in the worker role."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Queue
from phaseshift.render import components
from phaseshift.render.scope import Scope
from phaseshift.render.workload import role_deployment

COMPONENT = "worker"
SUFFIX = "worker"


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.queue is not Queue.RABBITMQ:
        return []
    return [
        role_deployment(
            scope,
            suffix=SUFFIX,
            component=COMPONENT,
            role="worker",
            command=["python", "-m", "sample_app", "worker"],
            size=components.size(scope, "worker"),
            replicas=components.worker_replicas(scope),
        )
    ]
