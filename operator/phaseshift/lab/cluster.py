"""A local Kubernetes control plane without Docker: kwokctl's binary runtime.

etcd, kube-apiserver (TLS, RBAC, admission, ServiceAccount tokens), kube-controller-manager,
kube-scheduler and kwok run as local processes on loopback, from binaries built by
tools/build.sh. kwok manages fake nodes; its default stages make pods Running/Ready and
let Job pods complete. Every process is tracked by a PID file under the cluster's
directory, so `down` stops exactly what `up` started, also after a crash of `up`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from phaseshift.api import GROUP, PLURAL
from phaseshift.crd import crd_yaml
from phaseshift.lab import binaries
from phaseshift.lab.prometheus import PrometheusServer


class ClusterError(RuntimeError):
    """A cluster operation failed; the message says what and what to do."""


@dataclass(frozen=True)
class LocalCluster:
    name: str

    @property
    def directory(self) -> Path:
        return kwok_workdir() / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig.yaml"

    @property
    def prometheus_dir(self) -> Path:
        return self.directory / "phaseshift-prometheus"

    def server(self) -> tuple[str, int]:
        config = yaml.safe_load(self.kubeconfig.read_text())
        url = urlparse(config["clusters"][0]["cluster"]["server"])
        return url.hostname or "127.0.0.1", url.port or 443

    def exists(self) -> bool:
        return self.directory.exists()

    def is_running(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        return port_open(*self.server())

    @property
    def own_pids_dir(self) -> Path:
        """PID files of the processes phaseshift adds beside kwokctl's (the provisioner)."""
        return self.directory / "phaseshift-pids"

    def pids(self) -> list[int]:
        found = []
        pid_files = [*(self.directory / "pids").glob("*.pid"), *self.own_pids_dir.glob("*.pid")]
        for pid_file in pid_files:
            try:
                found.append(int(pid_file.read_text().strip()))
            except ValueError:
                continue
        return found


def kwok_workdir() -> Path:
    return binaries.cache_root() / "kwok"


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _kwokctl(bin_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KWOK_WORKDIR": str(kwok_workdir())}
    result = subprocess.run(
        [str(bin_dir / "kwokctl"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-15:])
        raise ClusterError(f"kwokctl {' '.join(args[:3])} failed:\n{tail}")
    return result


def install_crd(kubeconfig: Path) -> None:
    """Apply the ScalePlan CRD (as `phaseshift crd` generates it) and wait until served."""
    for args, stdin in (
        (["apply", "--server-side", "-f", "-"], crd_yaml()),
        (["wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}"], None),
    ):
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"kubectl {args[0]} of the CRD failed: {result.stderr.strip()}")


def _kubectl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _wait_nodes_ready(cluster: LocalCluster, nodes: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    jsonpath = '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
    while time.monotonic() < deadline:
        out = _kubectl(cluster, "get", "nodes", "-o", f"jsonpath={jsonpath}").stdout
        if out.split().count("True") >= nodes:
            return
        time.sleep(0.2)
    raise ClusterError(f"nodes of cluster {cluster.name!r} did not become Ready in {timeout:.0f}s")


def _wait_default_serviceaccount(cluster: LocalCluster, timeout: float) -> None:
    # Pods cannot be created in a namespace until its "default" ServiceAccount exists.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _kubectl(cluster, "get", "serviceaccount", "default", "-n", "default").returncode == 0:
            return
        time.sleep(0.2)
    raise ClusterError(f"the ServiceAccount controller of {cluster.name!r} did not start")


def _write_kwokctl_config(cluster: LocalCluster) -> Path:
    # Every component listens on loopback only; kwokctl's default is all interfaces.
    path = kwok_workdir() / f"{cluster.name}-kwokctl.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "kind": "KwokctlConfiguration",
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "options": {"bindAddress": "127.0.0.1"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _start_provisioner(cluster: LocalCluster) -> None:
    cluster.own_pids_dir.mkdir(parents=True, exist_ok=True)
    log = (cluster.directory / "provisioner.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "phaseshift.lab.provisioner", str(cluster.kubeconfig)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (cluster.own_pids_dir / "provisioner.pid").write_text(str(process.pid))


def up(
    name: str = "phaseshift",
    *,
    nodes: int = 3,
    with_prometheus: bool = False,
    port: int = 0,
    timeout: float = 120.0,
) -> LocalCluster:
    """Starts a cluster and waits until its nodes are Ready. Leaves nothing running on failure."""
    cluster = LocalCluster(name)
    if cluster.is_running():
        raise ClusterError(
            f"a cluster named {name!r} is already running; "
            f"use it, or stop it with `phaseshift cluster down --name {name}`"
        )
    if port and port_open("127.0.0.1", port):
        raise ClusterError(f"port {port} on 127.0.0.1 is already in use; choose another --port")
    try:
        bin_dir = binaries.ensure_built()
    except binaries.BinariesMissing as e:
        raise ClusterError(str(e)) from e
    if cluster.exists():
        # Left behind by a crash: clear it so the new cluster starts clean.
        down(name)
    args = [
        "create", "cluster", "--name", name, "--runtime", "binary",
        "--secure-port=true", "--kube-authorization=true", "--kube-admission=true",
        "--config", str(_write_kwokctl_config(cluster)),
        "--kubeconfig", "", "--wait", f"{int(timeout)}s", "--quiet-pull",
        "--disable-qps-limits",
        f"--etcd-binary={bin_dir / 'etcd'}",
        f"--kube-apiserver-binary={bin_dir / 'kube-apiserver'}",
        f"--kube-controller-manager-binary={bin_dir / 'kube-controller-manager'}",
        f"--kube-scheduler-binary={bin_dir / 'kube-scheduler'}",
        f"--kwok-controller-binary={bin_dir / 'kwok'}",
    ]  # fmt: skip
    if port:
        args.append(f"--kube-apiserver-port={port}")
    try:
        _kwokctl(bin_dir, *args)
        _kwokctl(bin_dir, "scale", "node", "--name", name, "--replicas", str(nodes))
        _start_provisioner(cluster)
        _wait_nodes_ready(cluster, nodes, timeout)
        _wait_default_serviceaccount(cluster, timeout)
        if with_prometheus:
            prometheus = PrometheusServer(cluster.prometheus_dir)
            prometheus.start()
    except BaseException:
        down(name)
        raise
    return cluster


def down(name: str = "phaseshift") -> bool:
    """Stops every process of the cluster by PID and removes its files. True if any existed."""
    cluster = LocalCluster(name)
    if not cluster.exists():
        return False
    PrometheusServer(cluster.prometheus_dir).stop()
    # Read the PID files first: kwokctl removes the cluster's directory with them.
    pids = cluster.pids()
    if not binaries.missing():
        _kwokctl(binaries.bin_dir(), "delete", "cluster", "--name", name, check=False)
    for pid in pids:  # ours (the provisioner) and whatever kwokctl could not stop
        _terminate(pid)
    shutil.rmtree(cluster.directory, ignore_errors=True)
    (kwok_workdir() / f"{name}-kwokctl.yaml").unlink(missing_ok=True)
    return True


def _terminate(pid: int, grace: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def up_command(name: str, *, nodes: int, with_prometheus: bool, port: int = 0) -> int:
    try:
        cluster = up(name, nodes=nodes, with_prometheus=with_prometheus, port=port)
    except ClusterError as e:
        print(f"phaseshift cluster up: {e}", file=sys.stderr)
        return 1
    print(f"cluster {name!r} is up with {nodes} Ready nodes")
    print(f"  kubectl --kubeconfig {cluster.kubeconfig} get nodes")
    if with_prometheus:
        print(f"  Prometheus: {PrometheusServer(cluster.prometheus_dir).url}")
    return 0


def down_command(name: str) -> int:
    if down(name):
        print(f"cluster {name!r} stopped and removed")
    else:
        print(f"no cluster named {name!r}")
    return 0


def kubeconfig_command(name: str) -> int:
    cluster = LocalCluster(name)
    if not cluster.kubeconfig.exists():
        print(
            f"phaseshift cluster kubeconfig: no cluster named {name!r}; "
            f"start one with `phaseshift cluster up --name {name}`",
            file=sys.stderr,
        )
        return 1
    print(cluster.kubeconfig)
    return 0
