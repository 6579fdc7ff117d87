"""Transitions on the real node under a steady write load: 1 -> 2 migrates SQLite into
PostgreSQL, 2 -> 1 keeps the app on PostgreSQL, 1 -> 2 again migrates nothing, and no
write the app acknowledged on the way is lost.

The writer creates users through the app's entry Service from the host, one after
another, the whole time; after each move every user it was answered 201 for is read back
through the app.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from phaseshift.lab.cluster import Kubectl, LocalCluster, load_images
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.realshop import (
    PLAN,
    apply_plan,
    get,
    laptop_sizes,
    phase_images,
    pinned_plan,
    psql,
    served,
    service_url,
    settled,
)
from phaseshift.lab.wait import wait_for
from phaseshift.lab.writer import Writer

pytestmark = pytest.mark.integration


def move_to(kubectl: Kubectl, namespace: str, phase: int) -> dict[str, Any]:
    apply_plan(kubectl, namespace, pinned_plan(phase, **laptop_sizes()))
    status = wait_for(
        lambda: settled(kubectl, namespace, phase),
        timeout=600,
        poll=1,
        what=f"phase {phase} to settle",
    )
    assert status is not None
    return status


def reasons(kubectl: Kubectl, namespace: str) -> list[str]:
    listed = json.loads(
        kubectl(
            "-n", namespace, "get", "events",
            "--field-selector", f"involvedObject.name={PLAN}", "-o", "json",
        ).stdout
    )  # fmt: skip
    return [e["reason"] for e in listed["items"]]


def move_under_writes(
    kubectl: Kubectl, namespace: str, url: str, phase: int
) -> tuple[Writer, dict[str, Any]]:
    """Moves the plan to `phase` while a writer writes through `url`, from before the move
    until after it has settled."""
    with Writer(url) as writer:
        writer.wait_for_acknowledged(20)
        status = move_to(kubectl, namespace, phase)
        writer.wait_for_acknowledged(50)
    return writer, status


def assert_none_lost(writer: Writer, url: str) -> None:
    assert writer.acknowledged, "the app acknowledged no write"
    lost = writer.missing(url)
    assert not lost, f"{len(lost)} of {len(writer.acknowledged)} acknowledged writes lost"


def test_up_down_and_up_again_under_writes_loses_nothing(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    load_images(
        cluster, phase_images("app", "postgres", "postgres-exporter", "redis", "redis-exporter")
    )
    move_to(kubectl, namespace, 1)
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    served(url)

    # 1 -> 2: the migration Job freezes phase 1's writes before its final pass.
    writer, status = move_under_writes(kubectl, namespace, url, 2)
    assert status["dataTier"] == "PostgreSQL"
    assert_none_lost(writer, url)
    assert reasons(kubectl, namespace).count("StepMigrateData") == 1
    job = next(
        j["metadata"]["name"]
        for j in json.loads(kubectl("-n", namespace, "get", "jobs", "-o", "json").stdout)["items"]
        if j["metadata"]["name"].startswith(f"{PLAN}-migrate-sqlite-")
    )
    log = kubectl("-n", namespace, "logs", f"job/{job}").stdout
    assert "writes to the source frozen" in log and "verified" in log, log
    first = writer.acknowledged[0]

    # 2 -> 1: the data stays in PostgreSQL; the app goes back to one server beside it.
    down, status = move_under_writes(kubectl, namespace, url, 1)
    assert status["dataTier"] == "PostgreSQL"
    assert_none_lost(writer, url)
    assert_none_lost(down, url)
    app = get(kubectl, namespace, "deployment", f"{PLAN}-app")
    volumes = app["spec"]["template"]["spec"].get("volumes") or []
    assert not [v for v in volumes if "persistentVolumeClaim" in v], volumes
    replica = get(kubectl, namespace, "statefulset", f"{PLAN}-postgres-replica")
    assert replica["spec"]["replicas"] == 0
    claims = kubectl("-n", namespace, "get", "pvc", "-o", "name").stdout.split()
    assert f"persistentvolumeclaim/data-{PLAN}-postgres-replica-0" in claims

    # 1 -> 2 again: nothing to migrate; the replica starts on its old volume and streams.
    up, _ = move_under_writes(kubectl, namespace, url, 2)
    for each in (writer, down, up):
        assert_none_lost(each, url)
    assert reasons(kubectl, namespace).count("StepMigrateData") == 1
    kubectl(
        "-n", namespace, "rollout", "status", f"statefulset/{PLAN}-postgres-replica",
        "--timeout=300s",
    )  # fmt: skip
    last = up.acknowledged[-1]
    found = wait_for(
        lambda: psql(
            kubectl,
            namespace,
            f"{PLAN}-postgres-replica-0",
            f"SELECT count(*) FROM users WHERE id IN ('{first}', '{last}')",
        ).strip(),
        until=lambda count: count == "2",
        timeout=120,
        poll=2,
        what="the replica to hold the first and the last write",
    )
    assert found == "2"


def test_an_operator_killed_at_each_step_of_1_to_2_converges_with_nothing_lost(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    """SIGKILL the operator whenever the migration reaches a new step, and start it again
    (it waits for the dead one's Lease to lapse): the move completes once, with one
    migration Job, phase 1's workloads gone, and every acknowledged write there once."""
    load_images(
        cluster, phase_images("app", "postgres", "postgres-exporter", "redis", "redis-exporter")
    )
    move_to(kubectl, namespace, 1)
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    served(url)
    killed_at: list[str] = []
    with Writer(url) as writer:
        writer.wait_for_acknowledged(30)
        apply_plan(kubectl, namespace, pinned_plan(2, **laptop_sizes()))

        def converged() -> bool:
            status = get(kubectl, namespace, "scaleplans.phaseshift.dev", PLAN).get("status", {})
            move = status.get("transition")
            if move and move["steps"][move["step"]] not in killed_at:
                killed_at.append(move["steps"][move["step"]])
                operator.kill()
                operator.start()
            return settled(kubectl, namespace, 2) is not None

        wait_for(converged, timeout=900, poll=0.5, what="1 -> 2 across operator kills")
        writer.wait_for_acknowledged(30)
    # The steps that wait are seen for certain; the others may pass between two looks.
    assert {"WaitReady", "MigrateData"} <= set(killed_at), killed_at
    assert_none_lost(writer, url)
    status = get(kubectl, namespace, "scaleplans.phaseshift.dev", PLAN)["status"]
    assert [(h["from"], h["to"]) for h in status["history"]] == [(1, 2)]
    jobs = json.loads(kubectl("-n", namespace, "get", "jobs", "-o", "json").stdout)["items"]
    assert len([j for j in jobs if "migrate-sqlite" in j["metadata"]["name"]]) == 1, jobs
    deployments = kubectl("-n", namespace, "get", "deployments", "-o", "name").stdout.split()
    assert sorted(deployments) == [
        f"deployment.apps/{PLAN}-app-blue",
        f"deployment.apps/{PLAN}-app-green",
        f"deployment.apps/{PLAN}-redis",
    ]
    rows = psql(
        kubectl,
        namespace,
        f"{PLAN}-postgres-0",
        "SELECT count(*), count(DISTINCT email) FROM users",
    ).split("|")
    assert rows[0] == rows[1] and int(rows[0]) >= len(writer.acknowledged), rows
