"""`phaseshift status` output, from a parsed plan: what a person reads first."""

from __future__ import annotations

from phaseshift.api import ScalePlan, parse_plan
from phaseshift.statusview import format_status


def _plan(status: dict[str, object]) -> ScalePlan:
    return parse_plan(
        {
            "apiVersion": "phaseshift.dev/v1alpha1",
            "kind": "ScalePlan",
            "metadata": {"name": "shop", "namespace": "team-a"},
            "spec": {},
            "status": status,
        }
    )


def test_a_new_plan_says_it_was_not_evaluated() -> None:
    assert format_status(_plan({})) == ["team-a/shop", "  not evaluated yet"]


def test_shows_phase_release_rollout_and_conditions() -> None:
    plan = _plan(
        {
            "phase": 4,
            "targetPhase": 4,
            "users": 2_000_000,
            "release": {"revision": "abc", "app": {"image": "registry.example/shop:1"}},
            "rollout": {
                "revision": "def",
                "image": "registry.example/shop:2",
                "strategy": "Canary",
                "state": "Progressing",
                "step": "Analyse",
                "startedAt": "2026-01-01T00:00:00Z",
                "canary": {"iteration": 1, "failedChecks": 1, "weightPercent": 20},
                "message": "check failed (1/3): error rate 0.2000 > 0.01",
            },
            "conditions": [
                {
                    "type": "RolloutInProgress",
                    "status": "True",
                    "reason": "CanaryAnalyse",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    )
    text = "\n".join(format_status(plan))
    assert "phase       4\n" in text
    assert "release     registry.example/shop:1 [abc]" in text
    assert "rollout     Canary of registry.example/shop:2: Progressing Analyse" in text
    assert "canary 20%, checks passed 1, failed 1" in text
    assert "error rate 0.2000 > 0.01" in text
    assert "RolloutInProgress  True    CanaryAnalyse" in text


def test_a_waiting_transition_shows_its_target() -> None:
    plan = _plan({"phase": 2, "targetPhase": 3, "liveColour": "green"})
    lines = format_status(plan)
    assert "  phase       2 -> 3" in lines
