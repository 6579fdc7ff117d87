"""Deployments that run the application image, in whichever role a phase needs."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Size
from phaseshift.render import appconfig
from phaseshift.render.pods import (
    APP_UID,
    container_security,
    empty_dir,
    http_probe,
    pod_security,
    pod_template,
    resources,
    topology_spread,
)
from phaseshift.render.scope import LABEL_SERVICE, Scope
from phaseshift.render.sizing import app_size

ANNOTATION_CONFIG_HASH = "phaseshift.dev/config-hash"
# The app's command; with no subcommand it serves the role in APP_ROLE.
APP_COMMAND = ("python", "-m", "sample_app")


def app_container(
    scope: Scope,
    *,
    role: str,
    image: str,
    command: list[str] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    serves_http: bool = True,
    size: Size | None = None,
) -> dict[str, Any]:
    app_port = scope.plan.spec.app.port
    # PORT also sits in the shared ConfigMap; set here it follows this pod's own release,
    # so an idle colour or a canary with a new spec.app.port listens where it is probed.
    values = {"APP_ROLE": role, "PORT": str(app_port), **appconfig.role_values(scope, role)}
    # The plan's own variables win over ours (one entry per name: env is a map list to
    # server-side apply), and any explicit env entry wins over envFrom.
    values.update({e.name: e.value for e in scope.plan.spec.app.env})
    env = [{"name": name, "value": value} for name, value in values.items()]
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        # Explicit even for the HTTP roles, whose image's entrypoint is the same command:
        # the pod does not depend on how an image was built.
        "command": list(command if command is not None else APP_COMMAND),
        "env": env,
        "envFrom": appconfig.env_from(scope),
        "ports": [{"name": "http", "containerPort": app_port}],
        "resources": resources(size if size is not None else app_size(scope)),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mounts or [])],
    }
    if serves_http:
        container["startupProbe"] = http_probe("/healthz", "http", period=2, failures=30)
        container["livenessProbe"] = http_probe("/healthz", "http")
        container["readinessProbe"] = http_probe("/readyz", "http", period=5)
    else:
        # A worker serves only /metrics; that it answers is what "alive" can mean.
        container["livenessProbe"] = http_probe("/metrics", "http", period=20)
    return container


def app_deployment(
    scope: Scope,
    *,
    suffix: str,
    component: str,
    container: dict[str, Any],
    replicas: int | None,
    strategy: dict[str, Any],
    service: str | None,
    extra_labels: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    spread: bool = False,
) -> dict[str, Any]:
    """A Deployment of the app image; `replicas` is None when an HPA owns the count."""
    extra = dict(extra_labels or {})
    selector = scope.selector(suffix, **extra)
    labels = dict(extra)
    if service is not None:
        labels[LABEL_SERVICE] = service
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security(APP_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [empty_dir("tmp"), *(volumes or [])],
    }
    if spread:
        pod_spec["topologySpreadConstraints"] = topology_spread(selector)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "strategy": strategy,
        "progressDeadlineSeconds": scope.plan.spec.rollout.rolling.progress_deadline_seconds,
        "template": pod_template(
            scope,
            workload=suffix,
            component=component,
            spec=pod_spec,
            metrics_port=scope.plan.spec.app.port,
            meshed=True,
            extra_labels=labels,
            annotations={ANNOTATION_CONFIG_HASH: appconfig.config_hash(scope)},
        ),
    }
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": scope.metadata(suffix, component),
        "spec": spec,
    }


def role_deployment(
    scope: Scope,
    *,
    suffix: str,
    component: str,
    role: str,
    command: list[str],
    size: Size,
    replicas: int,
) -> dict[str, Any]:
    """The app's image in a background role (the queue's workers, the stream's
    consumers): no Service and no HTTP port, rolled with no loss of capacity, its pods
    spread over the nodes."""
    container = app_container(
        scope,
        role=role,
        image=scope.image("app"),
        command=command,
        serves_http=False,
        size=size,
    )
    return app_deployment(
        scope,
        suffix=suffix,
        component=component,
        container=container,
        replicas=replicas,
        strategy=rolling(),
        service=None,
        spread=True,
    )


def recreate() -> dict[str, Any]:
    return {"type": "Recreate"}


def rolling(max_surge: int | str = "25%") -> dict[str, Any]:
    # maxUnavailable 0: capacity never drops below the desired count during an update.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": max_surge}}
