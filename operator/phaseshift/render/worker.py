"""Workers that consume the job queue (phase 3+), the same image in the worker role."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Queue
from phaseshift.render import components
from phaseshift.render.scope import Scope
from phaseshift.render.workload import app_container, app_deployment, rolling

COMPONENT = "worker"
SUFFIX = "worker"


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.queue is not Queue.RABBITMQ:
        return []
    container = app_container(
        scope,
        role="worker",
        image=scope.image("app"),
        command=["python", "-m", "sample_app", "worker"],
        serves_http=False,
        size=components.size(scope, "worker"),
    )
    return [
        app_deployment(
            scope,
            suffix=SUFFIX,
            component=COMPONENT,
            container=container,
            replicas=components.worker_replicas(scope),
            strategy=rolling(),
            service=None,
            spread=True,
        )
    ]
