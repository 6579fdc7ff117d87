"""An in-memory stand-in for `phaseshift.kube.Kube`: objects, plan statuses, Events."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError
from test_merge_patch import apply_merge_patch

from phaseshift.api import LABEL_MANAGED_BY, LABEL_PLAN, MANAGED_BY
from phaseshift.kube import ANNOTATION_APPLIED_HASH, MANAGED_KINDS, applied_hash

Obj = Mapping[str, Any]
StoreKey = tuple[str, str, str, str]


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[StoreKey, dict[str, Any]] = {}
        self.plans: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.writes: list[str] = []
        self.status_patches: list[Mapping[str, Any]] = []
        self.refused_kinds: set[str] = set()
        self._version = 0

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def add_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        meta.setdefault("generation", 1)
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta["resourceVersion"] = self._next_version()
        self.plans[(meta["namespace"], meta["name"])] = body
        return body

    def plan(self, namespace: str, name: str) -> dict[str, Any]:
        """The plan as the API server stores it now (kopf's body, when it keeps up)."""
        return copy.deepcopy(self.plans[(namespace, name)])

    # ------------------------------------------------------------------ Kube's methods

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def apply(self, obj: Obj, namespace: str) -> bool:
        if obj["kind"] in self.refused_kinds:
            error = ApiException(status=403, reason="Forbidden")
            error.body = json.dumps({"message": f"{obj['kind']} is forbidden by a quota"})
            raise DynamicApiError(error)
        key = (obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
        digest = applied_hash(obj)
        live = self.objects.get(key)
        annotations = (live or {}).get("metadata", {}).get("annotations") or {}
        if annotations.get(ANNOTATION_APPLIED_HASH) == digest:
            return False
        body = copy.deepcopy(dict(obj))
        body["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED_HASH] = digest
        body["metadata"]["namespace"] = namespace
        generation = (live or {}).get("metadata", {}).get("generation", 0)
        changed = live is None or live.get("spec") != body.get("spec")
        body["metadata"]["generation"] = generation + 1 if changed else generation
        if live is not None and "status" in live:
            body["status"] = live["status"]
        self.objects[key] = body
        self.writes.append("apply")
        return True

    def list_managed(
        self, namespace: str, plan: str, kinds: Iterable[tuple[str, str]] = MANAGED_KINDS
    ) -> list[dict[str, Any]]:
        wanted = set(kinds)
        found = []
        for (api_version, kind, ns, _), obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            managed = labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_PLAN) == plan
            if ns == namespace and (api_version, kind) in wanted and managed:
                found.append(copy.deepcopy(obj))
        return found

    def delete(self, obj: Obj, namespace: str) -> None:
        key = (obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
        if self.objects.pop(key, None) is not None:
            self.writes.append("delete")

    def patch(self, obj: Obj, namespace: str, body: Mapping[str, Any]) -> None:
        key = (obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
        live = self.objects.get(key)
        if live is None:
            return
        self.objects[key] = _merged(live, body)
        self.writes.append("patch")

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str:
        self.status_patches.append(copy.deepcopy(dict(status)))
        plan = self.plans[(namespace, name)]
        plan["status"] = apply_merge_patch(plan.get("status") or {}, dict(status))
        plan["metadata"]["resourceVersion"] = self._next_version()
        self.writes.append("status")
        return str(plan["metadata"]["resourceVersion"])

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = self.objects.get(("v1", "Secret", namespace, name))
        if secret is None:
            return None
        raw = (secret.get("data") or {}).get(key)
        return base64.b64decode(raw).decode() if raw else None

    def event(self, plan: Obj, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))
        self.writes.append("event")

    # ------------------------------------------------------------------ the cluster's part

    def make_ready(self) -> None:
        """What the controllers would do: every workload rolled out, every Job done,
        every claim bound."""
        for obj in self.objects.values():
            spec, meta = obj.get("spec") or {}, obj["metadata"]
            want = spec.get("replicas", 1)
            if obj["kind"] in ("Deployment", "StatefulSet"):
                obj["status"] = {
                    "observedGeneration": meta.get("generation", 0),
                    "replicas": want,
                    "readyReplicas": want,
                    "availableReplicas": want,
                    "updatedReplicas": want,
                }
            elif obj["kind"] == "Job":
                obj["status"] = {"succeeded": 1}
            elif obj["kind"] == "PersistentVolumeClaim":
                obj["status"] = {"phase": "Bound"}

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def _merged(live: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`live` with an RFC 7386 merge patch applied."""
    result = copy.deepcopy(dict(live))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
