"""What the renderer is given besides the plan: values only the shell can know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Colour = Literal["blue", "green"]


@dataclass(frozen=True)
class RenderContext:
    """Inputs that are not in the ScalePlan; render stays pure by only writing these.

    db_password: generated once by the shell and kept in the plan's credentials Secret;
        the passwords of the other services are derived from it (see credentials.py).
    live_colour: the blue-green colour that serves traffic in phase 2.
    stable_image: set while a rollout of a new spec.app.image is in progress: the live
        colour (phase 2) and the stable Deployments (phase 4) keep this image, while the
        idle colour or the canaries run the new one. None when no rollout is in progress.
    """

    db_password: str
    live_colour: Colour = "blue"
    stable_image: str | None = None

    @property
    def idle_colour(self) -> Colour:
        return "green" if self.live_colour == "blue" else "blue"

    @property
    def rollout_in_progress(self) -> bool:
        return self.stable_image is not None
