"""The Reconciler as an executor, against an in-memory Kube: it observes, advances the
pure state machines, carries out their effects and records every step in status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fakekube import FakeKube

from phaseshift import transition
from phaseshift.api import App, parse_plan
from phaseshift.kube import ANNOTATION_APPLIED_HASH
from phaseshift.metrics import OperatorMetrics
from phaseshift.reconcile import Reconciler
from phaseshift.rollout import CanaryReading

T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)
NS, NAME = "web", "shop"
V1, V2 = "registry.example/shop:1.0", "registry.example/shop:2.0"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def no_canary(*_: Any) -> CanaryReading:
    raise AssertionError("no canary in these tests")


class Shell:
    """A Reconciler over a FakeKube holding one plan, ticked with explicit clocks."""

    def __init__(
        self,
        canary_query: Callable[..., CanaryReading] = no_canary,
        rollout: dict[str, Any] | None = None,
        **policy: Any,
    ) -> None:
        self.kube = FakeKube()
        spec = {"app": {"image": V1}, "policy": policy, "rollout": rollout or {}}
        self.kube.add_plan({"metadata": {"name": NAME, "namespace": NS}, "spec": spec})
        self.reconciler = Reconciler(self.kube, OperatorMetrics(), canary_query=canary_query)

    def body(self) -> dict[str, Any]:
        return self.kube.plan(NS, NAME)

    def status(self) -> dict[str, Any]:
        return dict(self.body().get("status") or {})

    def tick(self, seconds: float, body: dict[str, Any] | None = None) -> float | None:
        return self.reconciler.tick(body or self.body(), None, at(seconds), decide=False)

    def release(self, image: str) -> None:
        """The user sets spec.app to `image`."""
        plan = self.kube.plans[(NS, NAME)]
        plan["spec"]["app"] = App(image=image).to_json()
        plan["metadata"]["generation"] += 1

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)

    def start_transition(self, current: int, target: int, seconds: float = 0) -> None:
        move, _ = transition.start(current, target, at(seconds))
        self.kube.patch_status(NS, NAME, {"transition": move.to_json()})

    def run_transition(self, until: str | None = None) -> None:
        """Tick once a second, the cluster catching up in between, until the step `until`
        is under way or the transition is over."""
        for seconds in range(1, 30):
            self.tick(seconds)
            move = self.status().get("transition")
            if move is None or move["steps"][move["step"]] == until:
                return
            self.kube.make_ready()
        raise AssertionError(f"the transition did not reach {until or 'its end'}")


def started(current: int = 1, target: int = 2) -> Shell:
    """A plan settled in `current`, with a transition to `target` just recorded."""
    shell = Shell()
    shell.tick(0)
    shell.kube.make_ready()
    shell.start_transition(current, target)
    return shell


def test_a_new_plan_is_applied_at_its_lowest_phase_and_a_steady_tick_writes_nothing() -> None:
    shell = Shell(minPhase=1)
    assert shell.tick(0) is None
    assert (shell.status()["phase"], shell.status()["targetPhase"]) == (1, 1)
    assert shell.kube.get("apps/v1", "Deployment", NS, f"{NAME}-app") is not None
    assert shell.kube.reasons() == ["Initialized"]
    assert shell.condition("Ready")["status"] == "True"
    shell.kube.make_ready()
    writes = len(shell.kube.writes)
    for seconds in (1, 2, 3):
        shell.tick(seconds)
    assert len(shell.kube.writes) == writes


def test_a_recorded_transition_runs_every_step_and_records_each_one() -> None:
    shell = started()
    shell.run_transition()
    status = shell.status()
    assert status["phase"] == 2 and "transition" not in status
    assert [(h["from"], h["to"], h["reason"]) for h in status["history"]] == [(1, 2, "Promoted")]
    steps = [f"Step{s}" for s in transition.plan_steps(1, 2)]
    assert [r for r in shell.kube.reasons() if r.startswith("Step")] == steps
    assert shell.kube.reasons()[-1] == "TransitionComplete"
    # Every step that finished was in status before the next one ran.
    recorded = [
        p["transition"]["step"]
        for p in shell.kube.status_patches
        if (p.get("transition") or {}).get("step") is not None
    ]
    assert recorded == list(range(len(steps)))  # 0: as the transition was started
    assert shell.kube.get("batch/v1", "Job", NS, f"{NAME}-migrate") is None  # retired
    assert shell.kube.get("apps/v1", "StatefulSet", NS, f"{NAME}-postgres") is not None
    assert shell.condition("Degraded")["reason"] == "TransitionSucceeded"


def test_a_waiting_step_says_so_and_times_out_into_degraded() -> None:
    shell = Shell()
    shell.tick(0)
    shell.start_transition(1, 2)
    shell.tick(1)
    assert shell.status()["transition"]["steps"][shell.status()["transition"]["step"]] == (
        "WaitReady"
    )
    transitioning = shell.condition("Transitioning")
    assert (transitioning["status"], transitioning["reason"]) == ("True", "WaitReady")
    assert shell.tick(2) is not None  # under way: look again soon
    shell.tick(700)
    status = shell.status()
    assert status["phase"] == 1 and "transition" not in status
    degraded = shell.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "StepFailed")
    assert "WaitReady timed out after 699s" in degraded["message"]
    assert shell.condition("Ready")["status"] == "False"
    assert shell.kube.reasons()[-1] == "TransitionFailed"


def test_a_refused_write_fails_the_transition_and_keeps_the_last_good_phase() -> None:
    shell = Shell()
    shell.tick(0)
    shell.kube.make_ready()
    before = set(shell.kube.objects)
    shell.kube.refused_kinds.add("StatefulSet")
    shell.start_transition(1, 2)
    shell.tick(1)
    status = shell.status()
    assert status["phase"] == 1 and status["targetPhase"] == 1 and "transition" not in status
    degraded = shell.condition("Degraded")
    assert degraded["message"].startswith("Provision: the API server refused it: StatefulSet")
    assert before <= set(shell.kube.objects)


def test_a_failure_after_the_switch_applies_the_last_phase_again() -> None:
    shell = started()
    shell.run_transition(until="Verify")
    shell.tick(1000)  # Verify times out: the app is sent back to phase 1
    assert shell.status()["phase"] == 1
    app = shell.kube.get("apps/v1", "Deployment", NS, f"{NAME}-app")
    assert app is not None and app["metadata"]["labels"]["phaseshift.dev/phase"] == "1"


def test_a_body_older_than_the_last_write_is_read_with_that_write() -> None:
    shell = Shell()
    stale = shell.body()
    shell.tick(0)
    # kopf's watch still hands in the body from before the first write.
    shell.tick(1, body=stale)
    assert shell.kube.reasons() == ["Initialized"]
    assert shell.status()["phase"] == 1


def test_a_new_release_rolls_out_and_is_recorded() -> None:
    shell = Shell()
    shell.tick(0)
    shell.kube.make_ready()
    shell.release(V2)
    shell.tick(1)
    assert shell.status()["rollout"]["state"] == "Progressing"
    app = shell.kube.get("apps/v1", "Deployment", NS, f"{NAME}-app")
    assert app is not None
    assert app["spec"]["template"]["spec"]["containers"][0]["image"] == V2
    shell.kube.make_ready()
    assert shell.tick(2) is None
    status = shell.status()
    assert status["rollout"]["state"] == "Succeeded"
    assert status["release"]["app"]["image"] == V2
    assert parse_plan(shell.body()).status.app_revision == status["release"]["revision"]
    assert "RolloutSucceeded" in shell.kube.reasons()


def failing_canary(*_: Any) -> CanaryReading:
    return CanaryReading(error_rate=0.5, p95_latency_seconds=0.05)


def test_a_failed_canary_is_rolled_back_without_writing_the_stable_deployments() -> None:
    # A write to a stable Deployment would restart the pods that serve while the canary
    # is judged, and again when it is rolled back.
    canary = {"intervalSeconds": 1, "iterations": 2, "threshold": 2, "maxErrorRate": 0.05}
    shell = Shell(failing_canary, {"canary": canary}, minPhase=4, maxPhase=4)
    shell.tick(0)
    shell.kube.make_ready()
    stable = [f"{NAME}-{role}" for role in ("user-service", "data-service", "gateway")]

    def written(name: str) -> tuple[int, str]:
        dep = shell.kube.get("apps/v1", "Deployment", NS, name)
        assert dep is not None, name
        return dep["metadata"]["generation"], dep["metadata"]["annotations"][
            ANNOTATION_APPLIED_HASH
        ]

    before = {name: written(name) for name in stable}
    canary_generation = written(f"{NAME}-gateway-canary")[0]
    shell.release(V2)
    for seconds in range(1, 30):
        shell.tick(seconds)
        if shell.status()["rollout"]["state"] != "Progressing":
            break
        shell.kube.make_ready()
    assert shell.status()["rollout"]["state"] == "RolledBack"
    assert shell.status()["rollout"]["canary"]["failedChecks"] == 2
    assert "CanaryCheckFailed" in shell.kube.reasons()
    assert {name: written(name) for name in stable} == before
    # Only the canary track carried the failed release.
    assert written(f"{NAME}-gateway-canary")[0] > canary_generation
