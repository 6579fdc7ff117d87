"""The README's "Try it on kind" walkthrough as a test: a kind cluster from
kind-config.yaml, both images built and loaded, manifests/ and the shop overlay
applied, examples/shop.yaml applied, load driven with the sample app's loadgen through
the NodePort, and the plan promoted from phase 1 to phase 2.

Needs Docker and kind; skipped, with the reason, where either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
OPERATOR_IMAGE = "ghcr.io/phaseshift/operator:0.1.0"
APP_IMAGE = "ghcr.io/phaseshift/sample-app:0.1.0"
APP_NAMESPACE = "shop"
# kind-config.yaml maps node port 30080 here: the plan's exposure (the README's patch).
APP_URL = "http://127.0.0.1:8080"
EXPOSE_ON_KIND = '{"spec":{"exposure":{"type":"NodePort","nodePort":30080,"fromPhase":1}}}'


def _missing_tools() -> str | None:
    if shutil.which("kind") is None:
        return "kind is not installed"
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"no Docker engine: `docker info` failed: {info.stderr.strip()[:200]}"
    return None


def run(*args: str, input: str | None = None) -> str:
    result = subprocess.run(
        args, cwd=REPO_ROOT, input=input, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = _missing_tools()
    if reason:
        print(f"skipping the kind walkthrough: {reason}")
        pytest.skip(reason)
    name = f"phaseshift-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run("kind", "create", "cluster", "--name", name, "--config", "kind-config.yaml",
        "--kubeconfig", str(kubeconfig), "--wait", "120s")  # fmt: skip
    try:
        run("docker", "build", "-t", OPERATOR_IMAGE, ".")
        run("docker", "build", "-f", "sample_app/Dockerfile", "-t", APP_IMAGE, ".")
        for image in (OPERATOR_IMAGE, APP_IMAGE):
            run("kind", "load", "docker-image", image, "--name", name)
        yield kubeconfig
    finally:
        run("kind", "delete", "cluster", "--name", name)


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    return run("kubectl", "--kubeconfig", str(kubeconfig), *args, input=input)


def plan_status(kubeconfig: Path) -> dict[str, Any]:
    out = kubectl(kubeconfig, "get", "sp", "shop", "-n", APP_NAMESPACE, "-o", "json")
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def wait_phase(kubeconfig: Path, phase: int, timeout: float) -> dict[str, Any]:
    return wait_for(
        lambda: plan_status(kubeconfig),
        timeout,
        f"phase {phase}",
        poll=2,
        until=lambda status: status.get("phase") == phase and not status.get("transition"),
    )


def test_walkthrough_promotes_shop_from_phase_1_to_2(kind_cluster: Path) -> None:
    kc = kind_cluster
    kubectl(kc, "apply", "-k", "manifests/", "--server-side")
    kubectl(kc, "apply", "-k", "manifests/overlays/shop", "--server-side")
    for namespace, deployment in (("phaseshift-system", "phaseshift-operator"),
                                  ("monitoring", "prometheus")):  # fmt: skip
        kubectl(kc, "rollout", "status", f"deployment/{deployment}", "-n", namespace,
                "--timeout=180s")  # fmt: skip
    kubectl(kc, "apply", "-n", APP_NAMESPACE, "-f", "examples/shop.yaml")
    # As the README: the operator exposes the app on kind-config.yaml's node port.
    kubectl(kc, "patch", "sp", "shop", "-n", APP_NAMESPACE, "--type=merge", "-p", EXPOSE_ON_KIND)
    # The example waits 60s above a threshold before promoting; 15s keeps the test short
    # and changes nothing else about the decision.
    kubectl(kc, "patch", "sp", "shop", "-n", APP_NAMESPACE, "--type=merge",
            "-p", '{"spec":{"policy":{"promotion":{"stabilizationSeconds":15}}}}')  # fmt: skip
    wait_phase(kc, 1, timeout=300)
    kubectl(kc, "rollout", "status", "deployment", "-n", APP_NAMESPACE,
            "-l", "phaseshift.dev/plan=shop", "--timeout=180s")  # fmt: skip

    # Phase 1 is left at 1,000 active users (distinct users over the app's window).
    load = subprocess.Popen(
        [sys.executable, "-m", "sample_app", "loadgen", "--users", "1500",
         "--duration", "600", "--ramp", "60", "--think", "0.5", "--target", APP_URL],
        cwd=REPO_ROOT, env=os.environ.copy(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        status = wait_phase(kc, 2, timeout=600)
    finally:
        load.terminate()
        load.wait(timeout=30)
    assert [(h["from"], h["to"]) for h in status["history"]] == [(1, 2)]
    events = kubectl(kc, "get", "events", "-n", APP_NAMESPACE,
                     "--field-selector", "involvedObject.name=shop", "-o", "json")  # fmt: skip
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert "TransitionComplete" in reasons
