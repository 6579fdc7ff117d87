"""The objects a plan should run, built in one place for the shell and its tests.

Rendering is pure; its inputs are not all in the plan: the database password lives in
the plan's credentials Secret, a canary is sized against the live replicas of its stable
Deployment, and the image table is the operator's. `Desired` gathers them once.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from phaseshift import rollout, transition
from phaseshift.api import LABEL_COMPONENT, RolloutStrategy, ScalePlan, ScalePlanStatus
from phaseshift.catalog import FIRST_POSTGRES_PHASE, PHASES
from phaseshift.kube import KubeApi
from phaseshift.render import RenderContext, render_migration_job, render_phase, render_thaw_job
from phaseshift.render.credentials import PASSWORD_KEY, secret_name
from phaseshift.render.scope import LABEL_TRACK, Scope


def plan_id(plan: ScalePlan) -> str:
    """The key of a plan in the shell's per-plan memories."""
    return plan.metadata.uid or f"{plan.namespace}/{plan.name}"


class Desired:
    def __init__(self, kube: KubeApi, images: Mapping[str, str] | None = None) -> None:
        """`images` is the operator's image table (phaseshift.imagemap); None keeps the
        catalog's pinned images."""
        self.kube = kube
        self.images = dict(images) if images is not None else None
        self._passwords: dict[str, str] = {}

    def phase(self, plan: ScalePlan, phase: int, status: ScalePlanStatus) -> list[dict[str, Any]]:
        """`phase` as it should run now: the released app on the stable track, and
        whatever the rollout in progress runs beside it."""
        replicas = (
            self._stable_replicas(plan)
            if PHASES[phase].strategy is RolloutStrategy.CANARY and rollout.busy(status)
            else {}
        )
        stable, ctx = rollout.render_inputs(
            plan, status, self.password(plan), replicas, images=self.images
        )
        return render_phase(stable, phase, ctx)

    def migration_job(self, plan: ScalePlan, status: ScalePlanStatus) -> dict[str, Any]:
        """The migration Job of the transition under way."""
        assert status.transition is not None
        stable, ctx = rollout.render_inputs(plan, status, self.password(plan), images=self.images)
        return render_migration_job(stable, ctx, transition.attempt(status.transition))

    def thaw_job(self, plan: ScalePlan, status: ScalePlanStatus, attempt: str) -> dict[str, Any]:
        stable, ctx = rollout.render_inputs(plan, status, self.password(plan), images=self.images)
        return render_thaw_job(stable, ctx, attempt)

    def password(self, plan: ScalePlan) -> str:
        """The plan's database password: the credentials Secret's, else a new one (which
        the first apply stores there)."""
        key = plan_id(plan)
        password = self._passwords.get(key)
        if password is None:
            # The Secret keeps its name in every phase; PostgreSQL is what reads it.
            scope = Scope(plan, FIRST_POSTGRES_PHASE, RenderContext(db_password=""))
            name = secret_name(scope)
            password = self.kube.read_secret_value(plan.namespace, name, PASSWORD_KEY)
            password = password or secrets.token_urlsafe(24)
            self._passwords[key] = password
        return password

    def _stable_replicas(self, plan: ScalePlan) -> dict[str, int]:
        """Service -> live replicas of its stable Deployment: canaries are sized to it."""
        replicas = {}
        for live in self.kube.list_managed(plan.namespace, plan.name, [("apps/v1", "Deployment")]):
            labels = live["metadata"].get("labels") or {}
            template = (live["spec"].get("template") or {}).get("metadata") or {}
            if (template.get("labels") or {}).get(LABEL_TRACK) == "stable":
                replicas[labels.get(LABEL_COMPONENT, "")] = int(live["spec"].get("replicas") or 0)
        return replicas
