"""`phaseshift cluster up/down/kubeconfig` as a user runs them, including bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from phaseshift.lab.cluster import LocalCluster

pytestmark = pytest.mark.integration


def phaseshift(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phaseshift.cli", *args], capture_output=True, text=True, check=False
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running; /proc says so.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_up_kubeconfig_down_leaves_nothing_running() -> None:
    name = f"cli-{os.getpid()}"
    up = phaseshift("cluster", "up", "--name", name, "--nodes", "2", "--prometheus")
    assert up.returncode == 0, up.stderr
    cluster = LocalCluster(name)
    pids = cluster.pids()
    try:
        kubeconfig = phaseshift("cluster", "kubeconfig", "--name", name).stdout.strip()
        nodes = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "--no-headers"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
        assert len(nodes) == 2
        assert all(" Ready " in line for line in nodes)

        again = phaseshift("cluster", "up", "--name", name)
        assert again.returncode != 0
        assert "already running" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
    finally:
        down = phaseshift("cluster", "down", "--name", name)
    assert down.returncode == 0
    assert pids, "the cluster recorded no PIDs"
    assert not [p for p in pids if alive(p)]
    assert not cluster.directory.exists()


def test_up_on_a_taken_port_fails_clearly_and_starts_nothing() -> None:
    name = f"port-{os.getpid()}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = phaseshift("cluster", "up", "--name", name, "--port", str(port))
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert not LocalCluster(name).exists()


def test_kubeconfig_of_an_unknown_cluster_says_what_to_do() -> None:
    result = phaseshift("cluster", "kubeconfig", "--name", "no-such-cluster")
    assert result.returncode == 1
    assert "phaseshift cluster up --name no-such-cluster" in result.stderr


def test_down_of_an_unknown_cluster_is_harmless() -> None:
    result = phaseshift("cluster", "down", "--name", "no-such-cluster")
    assert result.returncode == 0
