"""`phaseshift cluster up --real-node` and `down` as a user runs them: bad input gets one
clear line and leaves nothing; `down` removes everything the node made, also after its
processes were killed.

These tests start real nodes of their own, so they run before the package's shared
node exists (pytest runs this file before test_real_node.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from phaseshift.lab import node, processes
from phaseshift.lab.cluster import LocalCluster
from phaseshift.lab.nodeconfig import KUBELET_HEALTHZ_PORT

pytestmark = pytest.mark.integration


def phaseshift(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phaseshift.cli", *args], capture_output=True, text=True, check=False
    )


def leftovers(cluster: LocalCluster, pids: list[int]) -> list[str]:
    """Everything of the cluster's node still on the host, one line each."""
    found = [f"process {pid}" for pid in pids if processes.alive(pid)]
    network, paths = cluster.network, cluster.node_paths
    if Path("/sys/class/net", network.bridge).exists():
        found.append(f"bridge {network.bridge}")
    tables = node.nft_tables()
    found += [f"nft table {t}" for t in tables if "kube-proxy" in t or "phaseshift" in t]
    for tool in ("iptables", "ip6tables"):
        rules = subprocess.run([tool, "-S"], capture_output=True, text=True, check=False).stdout
        rules += subprocess.run(
            [tool, "-t", "nat", "-S"], capture_output=True, text=True, check=False
        ).stdout
        found += [f"{tool} {r}" for r in rules.splitlines() if "KUBE-" in r or "CNI-" in r]
    found += [
        f"mount {m}" for m in node.mounts_under([paths.home, paths.run, Path("/var/lib/kubelet")])
    ]
    found += [f"cgroup {c}" for c in Path("/sys/fs/cgroup").glob("*/kubepods")]
    found += [
        f"directory {d}"
        for d in (cluster.directory, paths.run, Path("/var/lib/kubelet"))
        if d.exists()
    ]
    found += [
        f"process {pid} (a shim)" for pid in node.processes_mentioning(str(paths.containerd_socket))
    ]
    return found


def test_a_taken_port_gets_one_line_and_leaves_nothing() -> None:
    name = f"port-{os.getpid()}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", KUBELET_HEALTHZ_PORT))
        holder.listen()
        result = phaseshift("cluster", "up", "--real-node", "--name", name)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(KUBELET_HEALTHZ_PORT) in lines[0] and "in use" in lines[0]
    cluster = LocalCluster(name)
    assert leftovers(cluster, []) == []


def test_up_refuses_a_second_node_and_down_removes_everything_after_a_crash() -> None:
    name = f"life-{os.getpid()}"
    up = phaseshift("cluster", "up", "--real-node", "--name", name)
    assert up.returncode == 0, up.stderr
    cluster = LocalCluster(name)
    try:
        again = phaseshift("cluster", "up", "--real-node", "--name", name)
        assert again.returncode == 1
        assert again.stderr.strip().count("\n") == 0
        assert "already running" in again.stderr

        other = phaseshift("cluster", "up", "--real-node", "--name", f"{name}-b")
        assert other.returncode == 1
        assert f"cluster {name!r} already runs a real node" in other.stderr
        assert not LocalCluster(f"{name}-b").exists()

        # A crash: the node's processes die without cleaning up anything.
        node_pids = [
            processes.recorded_pid(cluster.node_paths.home / "pids", n) for n in node.PROCESS_NAMES
        ]
        assert all(node_pids)
        for pid in node_pids:
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        every_pid = [pid for pid in node_pids if pid is not None] + cluster.pids()
    finally:
        down = phaseshift("cluster", "down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert leftovers(cluster, every_pid) == []
