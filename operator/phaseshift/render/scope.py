"""One render's view of the plan: names, labels, ownership and resolved images."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from phaseshift.api import (
    API_VERSION,
    DEFAULT_IMAGE,
    GROUP,
    KIND,
    LABEL_PHASE,
    LABEL_PLAN,
    App,
    PhaseOverride,
    ScalePlan,
    managed_labels,
)
from phaseshift.catalog import IMAGES, PHASES
from phaseshift.catalog import Phase as CatalogPhase
from phaseshift.render.context import RenderContext
from phaseshift.render.names import label_value, object_name

# Stateful objects (data PVCs; database, queue and stream StatefulSets) carry this so the
# operator keeps them on demotion instead of pruning them with the rest of the phase.
ANNOTATION_STATEFUL = f"{GROUP}/stateful"
# Pod-selector labels. The phase label is kept off pod templates and selectors: a phase
# change must not restart a database whose spec did not change.
LABEL_WORKLOAD = f"{GROUP}/workload"
LABEL_SERVICE = f"{GROUP}/service"
LABEL_COLOUR = f"{GROUP}/colour"
LABEL_TRACK = f"{GROUP}/track"


@dataclass(frozen=True)
class Scope:
    plan: ScalePlan
    phase: int
    ctx: RenderContext

    @cached_property
    def catalog(self) -> CatalogPhase:
        return PHASES[self.phase].holding_data_in(self.ctx.data_tier)

    @cached_property
    def override(self) -> PhaseOverride | None:
        return self.plan.spec.override_for(self.phase)

    @cached_property
    def plan_label(self) -> str:
        return label_value(self.plan.name)

    def name(self, suffix: str) -> str:
        return object_name(self.plan.name, suffix)

    def running(self, app: App) -> Scope:
        """This scope with `app` in place of spec.app: the view of a second track."""
        spec = self.plan.spec.model_copy(update={"app": app})
        return Scope(self.plan.model_copy(update={"spec": spec}), self.phase, self.ctx)

    @property
    def _own_images(self) -> dict[str, str]:
        return dict(self.override.images) if self.override and self.override.images else {}

    def _chose_app_image(self) -> bool:
        return self.plan.spec.app.image != DEFAULT_IMAGE

    def image(self, key: str) -> str:
        """The image of component `key`: the plan's override for this phase, else (for
        the app) a spec.app.image the plan chose, else the operator's table."""
        own = self._own_images
        if key in own:
            return own[key]
        if key == "app" and self._chose_app_image():
            return self.plan.spec.app.image
        return self.ctx.images.get(key, IMAGES[key])

    def service_image(self, role: str) -> str:
        """The image of a phase-4 service: its own override, else the app's image. The
        operator's table may name the role too, which then replaces only the default app
        image: a plan that chose its app image keeps it for every service."""
        own = self._own_images
        if role in own:
            return own[role]
        if role in self.ctx.images and "app" not in own and not self._chose_app_image():
            return self.ctx.images[role]
        return self.image("app")

    @cached_property
    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.plan.name,
            "uid": self.plan.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(
        self,
        suffix: str,
        component: str,
        *,
        stateful: bool = False,
        owned: bool = True,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name(suffix),
            "labels": managed_labels(self.plan_label, self.phase, component),
        }
        if self.plan.namespace:
            meta["namespace"] = self.plan.namespace
        notes = dict(annotations or {})
        if stateful:
            notes[ANNOTATION_STATEFUL] = "true"
        if notes:
            meta["annotations"] = notes
        if owned:
            meta["ownerReferences"] = [dict(self.owner_reference)]
        return meta

    def selector(self, workload: str, **extra: str) -> dict[str, str]:
        """Labels that select one workload's pods; `workload` is a fixed suffix, so the
        value is short and valid whatever the plan is called."""
        return {LABEL_PLAN: self.plan_label, LABEL_WORKLOAD: workload, **extra}

    def selector_by_service(self, service: str, **extra: str) -> dict[str, str]:
        """Labels that select every pod serving `service`, whichever Deployment runs it."""
        return {LABEL_PLAN: self.plan_label, LABEL_SERVICE: service, **extra}

    def pod_labels(self, workload: str, component: str, **extra: str) -> dict[str, str]:
        labels = managed_labels(self.plan_label, self.phase, component)
        del labels[LABEL_PHASE]
        labels[LABEL_WORKLOAD] = workload
        labels.update(extra)
        return labels
