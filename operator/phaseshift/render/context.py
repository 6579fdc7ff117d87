"""What the renderer is given besides the plan: values only the shell can know."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from phaseshift.api import App, Colour, DataTier
from phaseshift.catalog import IMAGES

__all__ = ["Colour", "RenderContext"]


@dataclass(frozen=True)
class RenderContext:
    """Inputs that are not in the ScalePlan; render stays pure by only writing these.

    The plan's spec.app is what the stable track runs (the shell passes the released app
    there, see rollout.tracks); the context says what runs beside it.

    db_password: generated once by the shell and kept in the plan's credentials Secret;
        the passwords of the other services are derived from it (see credentials.py).
    live_colour: the blue-green colour that serves traffic in phase 2.
    next_app: the release on the second track, scaled up: phase 2's idle colour (the
        new release before the switch, the previous one during the grace period) and
        phase 4's canaries. None scales that track to zero.
    canary_weight: the share of phase 4's traffic, in percent, the canaries take.
    stable_replicas: service -> pods its stable Deployment runs now (the HPA's choice);
        the canaries are sized against it, and against the HPA's floor when unknown.
    data_tier: where the plan's data lives (status.dataTier); a phase without PostgreSQL
        runs on the PostgreSQL primary once the data lives there (catalog.Phase.holding_data_in).
    images: component -> image the operator uses where the plan chose none: the catalog's
        pinned images unless the operator was given a registry or an image map (see
        phaseshift.imagemap). The plan's own choices win over it (Scope.image).
    """

    db_password: str
    live_colour: Colour = "blue"
    next_app: App | None = None
    canary_weight: int = 0
    stable_replicas: Mapping[str, int] = field(default_factory=dict)
    data_tier: DataTier | None = None
    images: Mapping[str, str] = field(default_factory=lambda: dict(IMAGES))
