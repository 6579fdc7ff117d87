"""The demo's day: a load profile, and the shop plan compressed to run it in minutes."""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phaseshift.api import DEFAULT_SIGNALS
from phaseshift.lab.binaries import REPO_ROOT

SHOP_PLAN = REPO_ROOT / "examples" / "shop.yaml"
DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Profile:
    """Active users over one day, as (fraction of the day, users) keyframes joined
    log-linearly: growth is multiplicative, so each decade takes its own stretch."""

    name: str
    seconds: float
    """Wall time of the whole day at --speed 1."""
    keyframes: tuple[tuple[float, float], ...]
    peaks: int = 1

    def users(self, fraction: float) -> float:
        points = self.keyframes
        if fraction <= points[0][0]:
            return points[0][1]
        for (t0, u0), (t1, u1) in itertools.pairwise(points):
            if fraction <= t1:
                share = (fraction - t0) / (t1 - t0)
                return math.exp(math.log(u0) + share * (math.log(u1) - math.log(u0)))
        return points[-1][1]

    @property
    def peak_users(self) -> float:
        return max(u for _, u in self.keyframes)


# 0 -> 1.3M -> ~100 users. The peak stays above 1M (phase 3's promotion threshold) long
# enough to promote; the night falls below 700 (1K less the 30% hysteresis) to reach 1.
_DAY = (
    (0.0, 20.0), (0.07, 300.0), (0.16, 3_000.0), (0.27, 40_000.0), (0.38, 300_000.0),
    (0.46, 1_300_000.0), (0.6, 1_300_000.0), (0.68, 300_000.0), (0.77, 30_000.0),
    (0.86, 400.0), (0.93, 100.0), (1.0, 80.0),
)  # fmt: skip

PROFILES: dict[str, Profile] = {
    "day": Profile("day", 300.0, _DAY),
    # A launch: the climb happens in the first fifth of the day.
    "launch": Profile(
        "launch",
        300.0,
        (
            (0.0, 20.0),
            (0.05, 2_000.0),
            (0.12, 200_000.0),
            (0.2, 1_500_000.0),
            (0.55, 1_200_000.0),
            (0.7, 200_000.0),
            (0.82, 20_000.0),
            (0.9, 300.0),
            (1.0, 80.0),
        ),
    ),
    # What `--check` runs: the same day, compressed to stay well inside two minutes.
    "check": Profile("check", 75.0, _DAY),
}


@dataclass(frozen=True)
class Compression:
    """The plan's policy windows for a compressed day (real values in examples/shop.yaml)."""

    evaluation_interval: int
    promotion_stabilization: int
    cooldown: int
    demotion_stabilization: int
    rate_window: int

    @classmethod
    def for_speed(cls, profile: Profile, speed: float) -> Compression:
        # Windows shrink with the day, but never below what one evaluation can see.
        scale = profile.seconds / speed / 300.0
        return cls(
            evaluation_interval=1,
            promotion_stabilization=max(2, round(4 * scale)),
            cooldown=max(1, round(3 * scale)),
            demotion_stabilization=max(3, round(8 * scale)),
            rate_window=max(5, round(10 * scale)),
        )


def demo_plan(prometheus_url: str, c: Compression, path: Path = SHOP_PLAN) -> dict[str, Any]:
    """examples/shop.yaml pointed at the local Prometheus, its windows compressed."""
    plan: dict[str, Any] = copy.deepcopy(yaml.safe_load(path.read_text()))
    spec = plan["spec"]
    spec["metrics"]["prometheusUrl"] = prometheus_url
    policy = spec["policy"]
    policy["evaluationIntervalSeconds"] = c.evaluation_interval
    policy["promotion"]["stabilizationSeconds"] = c.promotion_stabilization
    policy["promotion"]["cooldownSeconds"] = c.cooldown
    policy["demotion"]["stabilizationSeconds"] = c.demotion_stabilization
    # The default signals average rates over [1m]; a compressed minute is a few seconds.
    spec["metrics"]["signals"] = {
        name: re.sub(r"\[1m\]", f"[{c.rate_window}s]", query)
        for name, query in DEFAULT_SIGNALS.items()
    }
    return plan


def describe_compression(original: dict[str, Any], c: Compression) -> list[str]:
    policy = original["spec"]["policy"]
    return [
        f"evaluationIntervalSeconds {policy['evaluationIntervalSeconds']} -> {c.evaluation_interval}",
        "promotion.stabilizationSeconds "
        f"{policy['promotion']['stabilizationSeconds']} -> {c.promotion_stabilization}",
        f"promotion.cooldownSeconds {policy['promotion']['cooldownSeconds']} -> {c.cooldown}",
        "demotion.stabilizationSeconds "
        f"{policy['demotion']['stabilizationSeconds']} -> {c.demotion_stabilization}",
        f"signal rate windows [1m] -> [{c.rate_window}s]",
    ]
