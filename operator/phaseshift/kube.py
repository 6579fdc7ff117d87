"""The Kubernetes side of the shell: server-side apply, reads, pruning, status and Events.

All writes use server-side apply (or, for status, a merge patch of the status
subresource) under one field manager. An object whose live copy already carries the
hash of what we would apply is not written again, so a steady tick makes no write call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

from phaseshift.api import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_PLAN,
    MANAGED_BY,
    MAX_MESSAGE_CHARS,
    PLURAL,
    VERSION,
)
from phaseshift.metrics import OperatorMetrics

FIELD_MANAGER = "phaseshift"
ANNOTATION_APPLIED_HASH = "phaseshift.dev/applied-hash"

# The kinds the renderer produces, listed when pruning a plan's objects.
MANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
)

Obj = Mapping[str, Any]


class KubeApi(Protocol):
    """What the reconciler needs of the cluster: `Kube`, or an in-memory fake in tests."""

    def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...

    def apply(self, obj: Obj, namespace: str) -> bool: ...

    def list_managed(
        self, namespace: str, plan: str, kinds: Iterable[tuple[str, str]] = ...
    ) -> list[dict[str, Any]]: ...

    def delete(self, obj: Obj, namespace: str) -> None: ...

    def patch(self, obj: Obj, namespace: str, body: Mapping[str, Any]) -> None: ...

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str: ...

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None: ...

    def event(self, plan: Obj, type_: str, reason: str, message: str) -> None: ...


def applied_hash(obj: Obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class Kube:
    def __init__(self, api: client.ApiClient, metrics: OperatorMetrics | None = None) -> None:
        self.api = api
        self.dynamic = DynamicClient(api)
        self.metrics = metrics or OperatorMetrics()
        self._missing_kinds: set[tuple[str, str]] = set()

    def _wrote(self, verb: str) -> None:
        self.metrics.writes.labels(verb).inc()

    def write_count(self) -> int:
        """Write calls made so far, all verbs."""
        total = 0.0
        for metric in self.metrics.writes.collect():
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return int(total)

    def _resource(self, api_version: str, kind: str) -> Any | None:
        if (api_version, kind) in self._missing_kinds:
            return None
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self._missing_kinds.add((api_version, kind))
            return None

    def served(self, obj: Obj) -> bool:
        """Whether the cluster serves this object's kind (monitoring CRDs may be absent)."""
        return self._resource(obj["apiVersion"], obj["kind"]) is not None

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = self._resource(api_version, kind)
        if resource is None:
            return None
        try:
            found: dict[str, Any] = resource.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        return found

    def apply(self, obj: Obj, namespace: str) -> bool:
        """Server-side applies `obj` unless its live copy is already what we applied.

        Returns True when it wrote."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        if resource is None:
            return False
        digest = applied_hash(obj)
        live = self.get(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
        if live is not None:
            annotations = live.get("metadata", {}).get("annotations") or {}
            if annotations.get(ANNOTATION_APPLIED_HASH) == digest:
                return False
        body = json.loads(json.dumps(obj))
        body["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED_HASH] = digest
        body["metadata"]["namespace"] = namespace
        resource.server_side_apply(
            body=body,
            name=obj["metadata"]["name"],
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        self._wrote("apply")
        return True

    def list_managed(
        self,
        namespace: str,
        plan: str,
        kinds: Iterable[tuple[str, str]] = MANAGED_KINDS,
    ) -> list[dict[str, Any]]:
        selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_PLAN}={plan}"
        found: list[dict[str, Any]] = []
        for api_version, kind in kinds:
            resource = self._resource(api_version, kind)
            if resource is None:
                continue
            items = resource.get(namespace=namespace, label_selector=selector).to_dict()["items"]
            for item in items:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                found.append(item)
        return found

    def delete(self, obj: Obj, namespace: str) -> None:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        if resource is None:
            return
        try:
            resource.delete(
                name=obj["metadata"]["name"],
                namespace=namespace,
                body={"propagationPolicy": "Background"},
            )
            self._wrote("delete")
        except NotFoundError:
            pass

    def patch(self, obj: Obj, namespace: str, body: Mapping[str, Any]) -> None:
        """Merge-patch a live object (RFC 7386); one gone already is left alone."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        if resource is None:
            return
        try:
            resource.patch(
                name=obj["metadata"]["name"],
                namespace=namespace,
                body=dict(body),
                content_type="application/merge-patch+json",
            )
        except NotFoundError:
            return
        self._wrote("patch")

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str:
        """Merge-patch the plan's status; returns the plan's new resourceVersion."""
        updated = client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}
        )
        self._wrote("status")
        metadata = cast(dict[str, Any], updated).get("metadata") or {}
        return str(metadata.get("resourceVersion", ""))

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = client.CoreV1Api(self.api).read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode() if raw else None

    def event(self, plan: Obj, type_: str, reason: str, message: str) -> None:
        meta = plan["metadata"]
        now = datetime.now(UTC)
        body = client.EventsV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{meta['name']}.{time.time_ns():x}", namespace=meta["namespace"]
            ),
            event_time=now,
            reporting_controller=f"{GROUP}/operator",
            reporting_instance=FIELD_MANAGER,
            action=reason,
            reason=reason,
            note=message[:MAX_MESSAGE_CHARS],
            type=type_,
            regarding=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="ScalePlan",
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
        )
        client.EventsV1Api(self.api).create_namespaced_event(meta["namespace"], body)
        self._wrote("event")


def permanent(error: DynamicApiError) -> bool:
    """A refusal that retrying cannot fix (invalid object, forbidden), unlike 409/429/5xx."""
    status = int(error.status or 0)
    return 400 <= status < 500 and status not in (409, 429)


def api_message(error: DynamicApiError) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: keys that went away,
    at any depth, become null; objects are patched key by key; anything else is replaced."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


def refused_object(error: DynamicApiError) -> tuple[str, str] | None:
    """(kind, name) of the object an API error is about, when the server says."""
    try:
        details = json.loads(error.body or "").get("details") or {}
    except (TypeError, ValueError, AttributeError):
        return None
    kind, name = details.get("kind"), details.get("name")
    return (str(kind), str(name)) if kind and name else None


def keyed(objects: Iterable[Obj]) -> dict[tuple[str, str, str], Obj]:
    return {(o["apiVersion"], o["kind"], o["metadata"]["name"]): o for o in objects}
