"""The pure transition state machine: its steps, what each one applies, retires and waits
for, every timeout and every abort, with an explicit clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phaseshift.api import LABEL_COMPONENT, LABEL_RETAIN, ConditionType, DataTier, Transition
from phaseshift.render.scope import ANNOTATION_STATEFUL
from phaseshift.transition import (
    APP_COMPONENTS,
    STEPS,
    Apply,
    ApplyPhase,
    Delete,
    Effect,
    Emit,
    Key,
    Observed,
    Outcome,
    Retain,
    SetCondition,
    Settle,
    Step,
    Thaw,
    advance,
    attempt,
    data_tier,
    job_failed,
    key_of,
    not_ready,
    plan_steps,
    provision_set,
    refused,
    retain_patch,
    retire_set,
    start,
    switch_set,
    workload_ready,
)


def obj(
    kind: str,
    name: str,
    *,
    component: str = "",
    stateful: bool = False,
    api_version: str = "v1",
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if component:
        metadata["labels"] = {LABEL_COMPONENT: component}
    if stateful:
        metadata["annotations"] = {ANNOTATION_STATEFUL: "true"}
    if generation is not None:
        metadata["generation"] = generation
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if spec is not None:
        body["spec"] = spec
    if status is not None:
        body["status"] = status
    return body


def deployment(
    replicas: int,
    ready: int,
    updated: int,
    generation: int = 1,
    observed: int = 1,
    old: int = 0,
) -> dict[str, Any]:
    """A Deployment whose `ready` pods are available; `old` pods of the previous
    template are still running beside the `updated` ones."""
    return obj(
        "Deployment",
        "app",
        api_version="apps/v1",
        spec={"replicas": replicas},
        status={
            "replicas": max(updated, ready) + old,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": updated,
            "observedGeneration": observed,
        },
        generation=generation,
    )


# plan_steps ---------------------------------------------------------------------------


def test_moving_up_from_phase_1_migrates_the_data() -> None:
    # The new app is Ready before the migration freezes the old one's writes, so writes
    # are refused only from the final pass to the switch of the Services.
    assert plan_steps(1, 2) == [
        Step.PROVISION,
        Step.WAIT_READY,
        Step.SWITCH_APP,
        Step.VERIFY,
        Step.MIGRATE_DATA,
        Step.ROUTE,
        Step.RETIRE,
    ]


@pytest.mark.parametrize(("current", "target"), [(2, 3), (3, 4), (4, 3), (3, 2), (2, 1)])
def test_no_other_move_migrates_data(current: int, target: int) -> None:
    # Above phase 1 the database tier stays PostgreSQL, so there is nothing to move; a move
    # down never copies data: the stateful tiers are retained instead.
    steps = plan_steps(current, target)
    assert Step.MIGRATE_DATA not in steps
    assert steps == [
        Step.PROVISION,
        Step.WAIT_READY,
        Step.SWITCH_APP,
        Step.VERIFY,
        Step.ROUTE,
        Step.RETIRE,
    ]


@pytest.mark.parametrize(
    ("current", "target", "tier", "migrates"),
    [
        (1, 2, "SQLite", True),
        (1, 2, None, True),  # a plan from before dataTier was recorded, in phase 1
        (1, 2, "PostgreSQL", False),  # back up after a demotion: the data is there already
        (2, 1, "PostgreSQL", False),
        (2, 3, "PostgreSQL", False),
    ],
)
def test_only_the_first_move_onto_postgresql_migrates(
    current: int, target: int, tier: DataTier | None, migrates: bool
) -> None:
    assert (Step.MIGRATE_DATA in plan_steps(current, target, tier)) is migrates


@pytest.mark.parametrize(
    ("recorded", "phase", "tier"),
    [
        (None, 1, "SQLite"),
        ("SQLite", 1, "SQLite"),
        (None, 2, "PostgreSQL"),
        ("SQLite", 2, "PostgreSQL"),
        ("PostgreSQL", 1, "PostgreSQL"),  # never back: SQLite lacks the writes made since
        ("PostgreSQL", 4, "PostgreSQL"),
    ],
)
def test_the_data_moves_to_postgresql_once_and_stays(
    recorded: DataTier | None, phase: int, tier: DataTier
) -> None:
    assert data_tier(recorded, phase) == tier


def test_app_services_are_routed_only_after_the_new_workloads_are_verified() -> None:
    steps = plan_steps(1, 2)
    assert steps.index(Step.SWITCH_APP) < steps.index(Step.VERIFY) < steps.index(Step.ROUTE)
    app_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "shop-app", "labels": {LABEL_COMPONENT: "app"}},
    }
    app_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-app-blue", "labels": {LABEL_COMPONENT: "app"}},
    }
    database_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "shop-postgres-rw", "labels": {LABEL_COMPONENT: "database"}},
    }
    target = [app_service, app_deployment, database_service]
    # The app's Service exists: Route flips it.
    assert switch_set(target, live(app_service)) == [app_deployment, database_service]
    # A Service the phase adds carries no traffic yet: SwitchApp creates it, so the new
    # workloads that need it (the gateway needs its services) can turn Ready.
    assert switch_set(target, live()) == target


def test_every_plan_provisions_first_and_retires_last() -> None:
    for current, target in [(1, 2), (2, 1), (3, 4)]:
        steps = plan_steps(current, target)
        assert steps[0] == Step.PROVISION
        assert steps[-1] == Step.RETIRE
        assert steps.index(Step.WAIT_READY) < steps.index(Step.SWITCH_APP)


# provision_set ------------------------------------------------------------------------


def test_provision_set_holds_backing_tiers_only() -> None:
    app_objects = [obj("Deployment", f"app-{c}", component=c) for c in sorted(APP_COMPONENTS)]
    backing = [
        obj("StatefulSet", "postgres", component="postgresql"),
        obj("Deployment", "redis", component="redis"),
        obj("Service", "edge", component="edge"),
    ]
    assert provision_set([*app_objects, *backing]) == backing


def test_an_object_without_a_component_label_is_provisioned() -> None:
    unlabelled = obj("ConfigMap", "extra")
    assert provision_set([unlabelled]) == [unlabelled]


# retire_set ---------------------------------------------------------------------------


def test_retire_set_deletes_what_the_target_phase_no_longer_has() -> None:
    kept = obj("Deployment", "app", component="app")
    gone = obj("Deployment", "redis", component="redis")
    delete, retain = retire_set([kept, gone], [kept])
    assert delete == [gone]
    assert retain == []


def test_retire_set_never_deletes_claims_or_stateful_objects() -> None:
    claim = obj("PersistentVolumeClaim", "data-postgres-0")
    stateful = obj("StatefulSet", "postgres", component="postgresql", stateful=True)
    secret = obj("Secret", "postgres-credentials", stateful=True)
    plain = obj("Service", "postgres", component="postgresql")
    delete, retain = retire_set([claim, stateful, secret, plain], [])
    assert delete == [plain]
    assert retain == [claim, stateful, secret]


def test_a_claim_without_any_annotation_is_still_retained() -> None:
    # Claims a StatefulSet made from its volumeClaimTemplates carry none of our annotations.
    claim = obj("PersistentVolumeClaim", "data-kafka-0")
    assert "annotations" not in claim["metadata"]
    delete, retain = retire_set([claim], [])
    assert delete == []
    assert retain == [claim]


def test_retire_set_matches_by_api_version_kind_and_name() -> None:
    live_service = obj("Service", "web")
    live_ingress = obj("Ingress", "web", api_version="networking.k8s.io/v1")
    delete, _ = retire_set([live_service, live_ingress], [obj("Service", "web")])
    assert delete == [live_ingress]
    assert key_of(live_ingress) == ("networking.k8s.io/v1", "Ingress", "web")


def test_stateful_annotation_other_than_true_does_not_retain() -> None:
    odd = obj("StatefulSet", "cache")
    odd["metadata"]["annotations"] = {ANNOTATION_STATEFUL: "false"}
    delete, retain = retire_set([odd], [])
    assert delete == [odd]
    assert retain == []


# workload_ready -----------------------------------------------------------------------


def test_a_deployment_is_ready_when_every_replica_is_ready_and_updated() -> None:
    assert workload_ready(deployment(3, ready=3, updated=3))
    assert not workload_ready(deployment(3, ready=2, updated=3))
    assert not workload_ready(deployment(3, ready=3, updated=2))


def test_a_deployment_with_old_pods_left_is_not_ready() -> None:
    # maxUnavailable 0: the old pods keep serving until the new ones are available, so
    # counting ready pods alone would call the rollout done one pod too early.
    assert not workload_ready(deployment(3, ready=3, updated=3, old=1))
    assert not workload_ready(deployment(3, ready=2, updated=3))
    assert workload_ready(deployment(3, ready=3, updated=3, old=0))


def test_a_deployment_whose_controller_lags_a_generation_is_not_ready() -> None:
    # The counts in status describe the previous spec until observedGeneration catches up.
    assert not workload_ready(deployment(3, ready=3, updated=3, generation=2, observed=1))
    assert workload_ready(deployment(3, ready=3, updated=3, generation=2, observed=2))


def test_a_fresh_deployment_without_status_is_not_ready() -> None:
    fresh = obj("Deployment", "app", api_version="apps/v1", spec={"replicas": 1}, generation=1)
    assert not workload_ready(fresh)


def test_replicas_default_to_one_and_zero_replicas_are_ready_once_observed() -> None:
    no_replicas = obj(
        "Deployment",
        "app",
        spec={},
        status={
            "replicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "updatedReplicas": 1,
            "observedGeneration": 1,
        },
        generation=1,
    )
    assert workload_ready(no_replicas)
    scaled_to_zero = deployment(0, ready=0, updated=0)
    assert workload_ready(scaled_to_zero)
    assert not workload_ready(deployment(0, ready=0, updated=0, generation=3, observed=2))


def test_a_statefulset_follows_the_same_rules() -> None:
    def statefulset(ready: int, observed: int) -> dict[str, Any]:
        return obj(
            "StatefulSet",
            "postgres",
            api_version="apps/v1",
            spec={"replicas": 2},
            status={"readyReplicas": ready, "updatedReplicas": 2, "observedGeneration": observed},
            generation=4,
        )

    assert workload_ready(statefulset(ready=2, observed=4))
    assert not workload_ready(statefulset(ready=1, observed=4))
    assert not workload_ready(statefulset(ready=2, observed=3))


def test_a_job_is_ready_once_it_succeeded() -> None:
    assert not workload_ready(obj("Job", "migrate", status={}))
    assert not workload_ready(obj("Job", "migrate", status={"active": 1, "succeeded": None}))
    assert workload_ready(obj("Job", "migrate", status={"succeeded": 1}))


def test_a_claim_is_ready_once_bound() -> None:
    assert not workload_ready(obj("PersistentVolumeClaim", "data", status={"phase": "Pending"}))
    assert not workload_ready(obj("PersistentVolumeClaim", "data"))
    assert workload_ready(obj("PersistentVolumeClaim", "data", status={"phase": "Bound"}))


def test_objects_without_a_rollout_are_ready_as_soon_as_they_exist() -> None:
    assert workload_ready(obj("Service", "web"))
    assert workload_ready(obj("ConfigMap", "settings"))


# job_failed ---------------------------------------------------------------------------


def test_job_failed_reports_the_failure_message() -> None:
    job = obj(
        "Job",
        "migrate",
        status={
            "conditions": [
                {"type": "Complete", "status": "False"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                },
            ]
        },
    )
    assert job_failed(job) == "Job has reached the specified backoff limit"


def test_job_failed_falls_back_to_the_reason_then_a_fixed_text() -> None:
    reason_only = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    bare = {"type": "Failed", "status": "True"}
    assert job_failed(obj("Job", "m", status={"conditions": [reason_only]})) == "DeadlineExceeded"
    assert job_failed(obj("Job", "m", status={"conditions": [bare]})) == "Job failed"


def test_a_running_or_succeeded_job_has_not_failed() -> None:
    assert job_failed(obj("Job", "m")) is None
    assert job_failed(obj("Job", "m", status={"active": 1})) is None
    not_yet = {"type": "Failed", "status": "False"}
    assert job_failed(obj("Job", "m", status={"conditions": [not_yet]})) is None
    done = {"type": "Complete", "status": "True"}
    assert job_failed(obj("Job", "m", status={"succeeded": 1, "conditions": [done]})) is None


# not_ready ----------------------------------------------------------------------------


def test_not_ready_names_missing_and_unready_objects() -> None:
    ready = deployment(1, ready=1, updated=1)
    ready["metadata"]["name"] = "web"
    waiting = deployment(3, ready=1, updated=3)
    waiting["metadata"]["name"] = "api"
    missing = obj("Service", "edge")
    live = {key_of(ready): ready, key_of(waiting): waiting}
    assert not_ready(live, [ready, waiting, missing]) == ["Deployment/api", "Service/edge"]
    assert not_ready(live, [ready]) == []


# hpa floors ---------------------------------------------------------------------------


def hpa(target: str, min_replicas: int) -> dict[str, Any]:
    return obj(
        "HorizontalPodAutoscaler",
        target,
        api_version="autoscaling/v2",
        spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min_replicas,
        },
    )


def test_a_deployment_an_hpa_scales_is_ready_only_at_the_hpa_floor() -> None:
    # Created with one replica, it is raised to minReplicas at the HPA's first sync, up to
    # a sync period later: routing to it before would serve the phase with too few pods.
    one = deployment(1, ready=1, updated=1)
    three = deployment(3, ready=3, updated=3)
    expected = [obj("Deployment", "app", api_version="apps/v1"), hpa("app", 3)]
    assert not_ready({key_of(one): one, key_of(expected[1]): expected[1]}, expected) == [
        "Deployment/app"
    ]
    assert not_ready({key_of(three): three, key_of(expected[1]): expected[1]}, expected) == []
    assert not_ready({key_of(one): one}, [expected[0]]) == []


# the state machine ----------------------------------------------------------------------

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


BACKING = obj("StatefulSet", "postgres", component="postgresql", api_version="apps/v1")
APP = obj("Deployment", "app", component="app", api_version="apps/v1")
APP_SERVICE = obj("Service", "app", component="app")
TARGET = [BACKING, APP, APP_SERVICE]
JOB = obj("Job", "migrate", component="database", api_version="batch/v1")


def ready(o: dict[str, Any]) -> dict[str, Any]:
    if o["kind"] == "Job":
        return {**o, "status": {"succeeded": 1}}
    return {
        **o,
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                   "updatedReplicas": 1, "observedGeneration": 0},
    }  # fmt: skip


def live(*objects: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    return {key_of(o): o for o in objects}


def moving(current: int = 1, target: int = 2, step: Step | None = None) -> Transition:
    move, _ = start(current, target, T0)
    if step is not None:
        move = move.model_copy(update={"step": move.steps.index(step)})
    return move


def emitted(effects: Sequence[Effect]) -> list[str]:
    return [e.reason for e in effects if isinstance(e, Emit)]


def test_start_plans_the_steps_and_announces_them() -> None:
    move, announced = start(1, 2, T0)
    assert move.steps == [str(s) for s in plan_steps(1, 2)]
    assert (move.from_, move.to, move.step, move.step_started_at) == (1, 2, 0, T0)
    assert announced.reason == "TransitionStarted"
    assert "Verify -> MigrateData -> Route" in announced.message


def test_every_step_has_a_handler() -> None:
    assert set(STEPS) == set(Step)


def test_provision_applies_the_backing_tiers_and_moves_on() -> None:
    done = advance(moving(), Observed(TARGET), at(1))
    assert done.outcome is Outcome.DONE
    assert done.effects[0] == Apply((BACKING,))
    assert emitted(done.effects) == ["StepProvision"]
    assert done.transition is not None
    assert (done.transition.current_step, done.transition.step_started_at) == ("WaitReady", at(1))


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Step.WAIT_READY, "StatefulSet/postgres"),
        # A new app Service is created at SwitchApp and waited for like the rest.
        (Step.VERIFY, "StatefulSet/postgres, Deployment/app, Service/app"),
    ],
)
def test_a_waiting_step_waits_for_its_objects(step: Step, expected: str) -> None:
    move = moving(step=step)
    waiting = advance(move, Observed(TARGET, live()), at(5))
    assert (waiting.outcome, waiting.transition) == (Outcome.WAITING, move)
    (condition,) = waiting.effects
    assert condition == SetCondition(
        ConditionType.TRANSITIONING, "True", step, f"waiting for {expected}"
    )
    done = advance(move, Observed(TARGET, live(ready(BACKING), ready(APP), APP_SERVICE)), at(6))
    assert done.outcome is Outcome.DONE
    assert emitted(done.effects) == [f"Step{step}"]


@pytest.mark.parametrize(
    ("step", "timeout"), [(Step.WAIT_READY, 600), (Step.MIGRATE_DATA, 1800), (Step.VERIFY, 600)]
)
def test_every_waiting_step_times_out(step: Step, timeout: float) -> None:
    move = moving(step=step)
    seen = Observed(TARGET, live(), JOB)
    assert advance(move, seen, at(timeout)).outcome is Outcome.WAITING
    failed = advance(move, seen, at(timeout + 1))
    assert (failed.outcome, failed.transition) == (Outcome.FAILED, None)
    *back, settle, degraded, event = failed.effects
    # Verify and MigrateData come after SwitchApp: the app goes back to the phase it left,
    # with its writes opened again when the migration may have frozen them.
    expected_back = {
        Step.WAIT_READY: [],
        Step.VERIFY: [ApplyPhase(1)],
        Step.MIGRATE_DATA: [ApplyPhase(1), Thaw(attempt(move))],
    }
    assert back == expected_back[step]
    assert settle == Settle(1)
    assert degraded.status == "True" and degraded.reason == "StepFailed"  # type: ignore[union-attr]
    assert f"{step} timed out after {timeout + 1:.0f}s" in degraded.message  # type: ignore[union-attr]
    assert event == Emit("Warning", "TransitionFailed", degraded.message)  # type: ignore[union-attr]


def test_migrate_data_runs_the_job_until_it_succeeds() -> None:
    move = moving(step=Step.MIGRATE_DATA)
    first = advance(move, Observed(TARGET, live(), JOB), at(1))
    assert first.outcome is Outcome.WAITING
    assert first.effects[0] == Apply((JOB,))
    running = advance(move, Observed(TARGET, live(JOB), JOB), at(2))
    assert running.outcome is Outcome.WAITING and "is running" in str(running.effects[-1])
    done = advance(move, Observed(TARGET, live(ready(JOB)), JOB), at(3))
    assert done.outcome is Outcome.DONE
    assert emitted(done.effects) == ["StepMigrateData"]
    assert done.transition is not None and done.transition.current_step == "Route"


def test_a_failed_migration_job_takes_the_app_back_with_its_writes_open() -> None:
    failed_job = {**JOB, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    move = moving(step=Step.MIGRATE_DATA)
    failed = advance(move, Observed(TARGET, live(failed_job), JOB), T0)
    assert failed.outcome is Outcome.FAILED
    assert failed.effects[:3] == (ApplyPhase(1), Thaw(attempt(move)), Settle(1))
    assert "data migration Job migrate failed: Job failed" in emitted_messages(failed.effects)[0]


def test_once_a_new_data_tier_serves_an_abort_stays_in_the_target_phase() -> None:
    """Phase 1's SQLite lacks every write made since the Route: going back would hide
    them, so the plan stays in phase 2, Degraded, and the old app stays frozen."""
    failed = refused(moving(1, 2, Step.RETIRE), "forbidden")
    assert failed.effects[0] == Settle(2)
    assert not any(isinstance(e, ApplyPhase | Thaw) for e in failed.effects)
    assert (
        SetCondition(
            ConditionType.DEGRADED,
            "True",
            "StepFailed",
            "Retire: the API server refused it: forbidden",
        )
        in failed.effects
    )


def test_an_abort_before_the_migration_needs_no_thaw() -> None:
    failed = refused(moving(1, 2, Step.VERIFY), "forbidden")
    assert failed.effects[:2] == (ApplyPhase(1), Settle(1))
    assert not any(isinstance(e, Thaw) for e in failed.effects)


def test_each_run_of_a_transition_has_its_own_attempt() -> None:
    first, _ = start(1, 2, T0)
    again, _ = start(1, 2, at(600))
    assert attempt(first) == attempt(first.model_copy(update={"step": 3}))
    assert attempt(first) != attempt(again)
    assert len(attempt(first)) == 8 and attempt(first).isalnum()


def emitted_messages(effects: Sequence[Effect]) -> list[str]:
    return [e.message for e in effects if isinstance(e, Emit)]


def test_switch_app_applies_all_but_the_app_services_and_route_applies_them() -> None:
    switched = advance(moving(step=Step.SWITCH_APP), Observed(TARGET, live(APP_SERVICE)), T0)
    assert switched.effects[0] == Apply((BACKING, APP))
    routed = advance(moving(step=Step.ROUTE), Observed(TARGET), T0)
    assert routed.effects[0] == Apply(tuple(TARGET))
    assert emitted(routed.effects) == ["StepRoute"]


def test_retire_deletes_the_rest_keeps_data_and_finishes_the_transition() -> None:
    old_app = obj("Deployment", "old", component="app", api_version="apps/v1")
    claim = obj("PersistentVolumeClaim", "data-sqlite")
    job = obj("Job", "shop-migrate-sqlite-a1b2c3d4", api_version="batch/v1")  # by its TTL
    move = moving(step=Step.RETIRE)
    done = advance(move, Observed(TARGET, live(*TARGET, old_app, claim, job)), at(90))
    assert (done.outcome, done.transition) == (Outcome.DONE, None)
    labelled = {"metadata": {"labels": {LABEL_RETAIN: "true"}}}
    assert done.effects[:2] == (Delete(old_app), Retain(claim, labelled))
    settle = done.effects[3]
    assert isinstance(settle, Settle) and settle.phase == 2 and settle.entry is not None
    assert (settle.entry.from_, settle.entry.to, settle.entry.reason) == (1, 2, "Promoted")
    assert settle.entry.duration_seconds == 90
    assert SetCondition(ConditionType.DEGRADED, "False", "TransitionSucceeded", "") in done.effects
    assert emitted(done.effects) == ["StepRetire", "TransitionComplete"]


def test_a_retained_statefulset_scales_to_zero_and_keeps_its_claims() -> None:
    redis = obj(
        "StatefulSet", "shop-redis", stateful=True, api_version="apps/v1", spec={"replicas": 1}
    )
    claim = obj("PersistentVolumeClaim", "data-shop-redis-0")
    done = advance(moving(2, 1, Step.RETIRE), Observed(TARGET, live(*TARGET, redis, claim)), T0)
    retained = {e.obj["metadata"]["name"]: e.patch for e in done.effects if isinstance(e, Retain)}
    assert retained == {
        "shop-redis": {"metadata": {"labels": {LABEL_RETAIN: "true"}}, "spec": {"replicas": 0}},
        "data-shop-redis-0": {"metadata": {"labels": {LABEL_RETAIN: "true"}}},
    }
    assert not any(isinstance(e, Delete) for e in done.effects)


def test_what_is_retained_and_scaled_to_zero_already_is_not_written_again() -> None:
    kept = {"labels": {LABEL_RETAIN: "true"}}
    redis = obj(
        "StatefulSet", "shop-redis", stateful=True, api_version="apps/v1", spec={"replicas": 0}
    )
    redis["metadata"].update(kept)
    claim = obj("PersistentVolumeClaim", "data-shop-redis-0")
    claim["metadata"].update(kept)
    assert retain_patch(redis) is None and retain_patch(claim) is None
    done = advance(moving(2, 1, Step.RETIRE), Observed(TARGET, live(*TARGET, redis, claim)), T0)
    assert not any(isinstance(e, Retain | Delete) for e in done.effects)
    # A retained StatefulSet a user scaled up again is scaled back down.
    redis["spec"]["replicas"] = 2
    assert retain_patch(redis) == {"spec": {"replicas": 0}}


def test_a_demotion_is_recorded_as_demoted() -> None:
    done = advance(moving(3, 2, Step.RETIRE), Observed(TARGET, live()), T0)
    settle = next(e for e in done.effects if isinstance(e, Settle))
    assert settle.entry is not None and settle.entry.reason == "Demoted"


def test_an_abort_before_the_switch_leaves_the_app_where_it_is() -> None:
    failed = refused(moving(step=Step.PROVISION), "quota exceeded")
    assert failed.outcome is Outcome.FAILED and failed.transition is None
    assert not any(isinstance(e, ApplyPhase) for e in failed.effects)
    assert emitted_messages(failed.effects) == [
        "Provision: the API server refused it: quota exceeded"
    ]


@pytest.mark.parametrize("step", [Step.VERIFY, Step.ROUTE, Step.RETIRE])
def test_an_abort_after_the_switch_sends_the_app_back_to_the_last_phase(step: Step) -> None:
    failed = refused(moving(2, 3, step), "forbidden")
    assert failed.effects[0] == ApplyPhase(2)
    assert failed.effects[1] == Settle(2)


def test_the_switch_step_itself_is_not_behind_when_it_fails() -> None:
    failed = refused(moving(2, 3, Step.SWITCH_APP), "forbidden")
    assert not any(isinstance(e, ApplyPhase) for e in failed.effects)
