"""Runs `phaseshift run` as a separate process against the test cluster, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from phaseshift.lab.prometheus import free_port


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_dir: Path,
        *,
        lease_namespace: str | None = None,
        clusterwide: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        # The installed operator keeps its Lease in its own namespace, not the plan's.
        self.lease_namespace = lease_namespace or namespace
        # As installed by manifests/: watching every namespace rather than the test's own.
        self.clusterwide = clusterwide
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.health_port = 0

    def start(self) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        log = (self.log_dir / f"operator-{time.monotonic_ns()}.log").open("wb")
        scope = [] if self.clusterwide else ["--namespace", self.namespace]
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "phaseshift.cli", "run",
                *scope,
                "--lease-namespace", self.lease_namespace,
                "--metrics-port", str(self.metrics_port),
                "--health-port", str(self.health_port),
            ],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the operator exited with {self.process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the operator did not become healthy")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def metric(self, name: str) -> float:
        """Sum of all samples of one metric from the operator's /metrics."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head = line.split(" ")[0]
                if head == name or head.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total
