"""`phaseshift run` as its own process against a cluster, as a user starts it: for the demo,
the integration tests and the benches. Stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from phaseshift.lab.ports import free_port


class OperatorFailed(RuntimeError):
    """The operator exited, or did not become healthy in time."""


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log: Path,
        *,
        lease_namespace: str | None = None,
        clusterwide: bool = False,
    ) -> None:
        """`log` is the file the operator's output goes to or, when it is a directory, where
        each start writes a file of its own."""
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        # The installed operator keeps its Lease in its own namespace, not the plan's.
        self.lease_namespace = lease_namespace or namespace
        # As installed by manifests/: watching every namespace rather than the test's own.
        self.clusterwide = clusterwide
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.health_port = 0

    def start(self, timeout: float = 60.0) -> None:
        """Starts it and waits until its /healthz answers; OperatorFailed if it does not."""
        self.metrics_port, self.health_port = free_port(), free_port()
        log = self.log / f"operator-{time.monotonic_ns()}.log" if self.log.is_dir() else self.log
        scope = [] if self.clusterwide else ["--namespace", self.namespace]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "phaseshift.cli", "run",
                    *scope,
                    "--lease-namespace", self.lease_namespace,
                    "--metrics-port", str(self.metrics_port),
                    "--health-port", str(self.health_port),
                ],
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OperatorFailed(
                    f"the operator exited with {self.process.returncode}; see {log}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise OperatorFailed(f"the operator did not become healthy; see {log}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
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
