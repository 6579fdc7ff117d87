"""A local cluster's start survives a component that dies at once (its port taken by a
cluster starting or stopping beside it), and `down` returns only once its processes are
gone. No control plane runs here: processes are small Python ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from phaseshift.lab import cluster, processes
from phaseshift.lab.wait import wait_for

IGNORES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def spawn(pids_dir: Path, name: str, code: str) -> int:
    return processes.spawn(pids_dir, name, [sys.executable, "-c", code], pids_dir / f"{name}.log")


def test_exited_names_the_recorded_processes_that_ended(tmp_path: Path) -> None:
    short = spawn(tmp_path, "short", "pass")
    long = spawn(tmp_path, "long", "import time; time.sleep(60)")
    try:
        wait_for(lambda: not processes.alive(short), 30, "the short process to end")
        assert processes.exited(tmp_path) == ["short"]
        assert processes.exited(tmp_path, ["long"]) == []
    finally:
        processes.terminate(long)


def test_terminate_returns_once_the_process_is_gone_even_past_sigterm(tmp_path: Path) -> None:
    pid = spawn(tmp_path, "stubborn", IGNORES_SIGTERM)
    log = tmp_path / "stubborn.log"
    wait_for(lambda: log.exists() and "ready" in log.read_text(), 30, "the handler set")
    assert processes.terminate(pid, grace=0.5)
    assert not processes.alive(pid)


def test_a_dead_component_fails_the_wait_for_nodes_at_once_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASESHIFT_CACHE", str(tmp_path))
    local = cluster.LocalCluster("stuck")
    pid = spawn(local.directory / "pids", "kwok-controller", "pass")
    wait_for(lambda: not processes.alive(pid), 30, "kwok-controller to end")
    log = local.directory / "logs" / "kwok-controller.log"
    log.parent.mkdir(parents=True)
    log.write_text("starting\nlisten tcp 127.0.0.1:32763: bind: address already in use\n")
    with pytest.raises(cluster.ClusterError, match=r"kwok-controller: .*address already in use"):
        cluster._ready_nodes(local)


class Starts:
    """Stands in for one kwokctl start: fails the first `failures` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, *_: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise cluster.ClusterError(f"start {self.calls}: kwok-controller exited")


def test_a_failed_start_is_cleared_and_tried_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    starts, downs = Starts(failures=1), []
    monkeypatch.setattr(cluster, "_start_kwok", starts)
    monkeypatch.setattr(cluster, "down", downs.append)
    cluster._start_kwok_with_one_retry(cluster.LocalCluster("c"), Path("bin"), 3, 0, 1.0, False)
    assert (starts.calls, downs) == (2, ["c"])


def test_a_second_failure_reports_both_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    starts = Starts(failures=2)
    monkeypatch.setattr(cluster, "_start_kwok", starts)
    monkeypatch.setattr(cluster, "down", lambda name: True)
    with pytest.raises(cluster.ClusterError, match=r"start 2: .*first start: start 1"):
        cluster._start_kwok_with_one_retry(cluster.LocalCluster("c"), Path("bin"), 3, 0, 1.0, False)
    assert starts.calls == 2
