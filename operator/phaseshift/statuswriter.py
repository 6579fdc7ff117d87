"""Writes a plan's status as a merge patch, and knows when kopf's copy of the plan lags.

kopf hands the reconciler the body its watch last saw, which may predate the status
this process wrote a moment ago; `fresh` puts that status back, so a tick never acts on
(or writes back) a state it already left.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from phaseshift.api import MAX_MESSAGE_CHARS, ScalePlan, ScalePlanStatus
from phaseshift.desired import plan_id
from phaseshift.kube import KubeApi, merge_patch

log = logging.getLogger(__name__)

# How many replaced resourceVersions to remember per plan.
SUPERSEDED_KEPT = 8


@dataclass
class _Written:
    """The last status this process wrote for a plan, and the resourceVersions it
    replaced: a body carrying one of those predates the write."""

    resource_version: str
    status: ScalePlanStatus
    superseded: list[str]


class StatusWriter:
    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self._written: dict[str, _Written] = {}

    def write(self, plan: ScalePlan, status: ScalePlanStatus) -> None:
        """Patch what changed since `plan.status`; `plan` then carries the new status."""
        new = status.to_json()
        old = plan.status.to_json()
        if new == old:
            return
        before = plan.metadata.resource_version
        after = self.kube.patch_status(plan.namespace, plan.name, merge_patch(old, new))
        plan.status = status.model_copy(deep=True)
        plan.metadata.resource_version = after
        written = self._written.get(plan_id(plan))
        superseded = written.superseded if written else []
        self._written[plan_id(plan)] = _Written(
            after, plan.status, [*superseded, before][-SUPERSEDED_KEPT:]
        )

    def fresh(self, plan: ScalePlan) -> ScalePlan:
        """`plan`, with the status this process last wrote when the body handed in is
        older than that write."""
        written = self._written.get(plan_id(plan))
        if written is None or plan.metadata.resource_version not in written.superseded:
            return plan
        metadata = plan.metadata.model_copy(update={"resource_version": written.resource_version})
        return plan.model_copy(update={"metadata": metadata, "status": written.status})

    def invalid(self, body: Mapping[str, Any], message: str, now: datetime) -> None:
        """Say Ready=False, InvalidSpec on a plan that does not parse (once per message)."""
        meta = body.get("metadata", {})
        conditions = (body.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        capped = message[:MAX_MESSAGE_CHARS]
        if ready and ready.get("reason") == "InvalidSpec" and ready.get("message") == capped:
            return
        condition = {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": capped,
            "lastTransitionTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observedGeneration": meta.get("generation", 0),
        }
        others = [c for c in conditions if c.get("type") != "Ready"]
        self.kube.patch_status(
            meta["namespace"], meta["name"], {"conditions": [*others, condition]}
        )
        try:
            self.kube.event(body, "Warning", "InvalidSpec", message)
        except Exception as e:  # an Event is worth less than the work it reports
            log.warning("could not post Event InvalidSpec: %s", e)
