"""A local Kubernetes control plane without Docker: kwokctl's binary runtime.

etcd, kube-apiserver (TLS, RBAC, admission, ServiceAccount tokens), kube-controller-manager,
kube-scheduler and kwok run as local processes on loopback, from binaries built by
tools/build.sh. kwok manages fake nodes; its default stages make pods Running/Ready and
let Job pods complete. With `real_node`, one real node named after the cluster joins it
(`lab/node.py`: containerd, kubelet, kube-proxy, CoreDNS and metrics-server), and kwok
manages only the fake nodes asked for. Every process is tracked by a PID file under the
cluster's directory, so `down` stops exactly what `up` started, also after a crash of `up`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from phaseshift.api import GROUP, PLURAL
from phaseshift.crd import crd_yaml
from phaseshift.lab import binaries, node, nodeaddons, processes
from phaseshift.lab.nodeconfig import NodeNetwork, NodePaths, bridge_name
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.wait import wait_for


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

    @property
    def volumes_dir(self) -> Path:
        """The PersistentVolumes' data (hostPath directories)."""
        return self.directory / "volumes"

    @property
    def node_paths(self) -> NodePaths:
        """Where the cluster's real node, if it has one, keeps its files."""
        return node.node_paths(self.directory, self.name)

    @property
    def network(self) -> NodeNetwork:
        return NodeNetwork(bridge=bridge_name(self.name))

    def has_real_node(self) -> bool:
        return self.node_paths.home.exists()

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
    """Apply the ScalePlan CRD (as `phaseshift crd` generates it) and wait until served.

    Polled rather than `kubectl wait`: a CRD created a moment ago has no conditions yet,
    and `kubectl wait --for=condition=...` fails on that instead of waiting."""

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )

    applied = kubectl("apply", "--server-side", "-f", "-", stdin=crd_yaml())
    if applied.returncode != 0:
        raise ClusterError(f"kubectl apply of the CRD failed: {applied.stderr.strip()}")
    established = '{.status.conditions[?(@.type=="Established")].status}'

    def served() -> str:
        result = kubectl("get", f"crd/{PLURAL}.{GROUP}", "-o", f"jsonpath={established}")
        return result.stdout.strip() if result.returncode == 0 else result.stderr.strip()

    try:
        wait_for(served, timeout=60, poll=0.5, until=lambda v: v == "True", what="the CRD")
    except AssertionError as e:
        raise ClusterError(f"the ScalePlan CRD is not Established: {e}") from e


class KubectlFailed(RuntimeError):
    """A kubectl command that had to succeed did not; the message carries its stderr."""


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def kubectl_runner(kubeconfig: Path) -> Kubectl:
    """`kubectl` against one cluster: run(*args, input=None, check=True)."""

    def run(
        *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlFailed(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def _kubectl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _log_tail(cluster: LocalCluster, component: str, lines: int = 3) -> str:
    log = cluster.directory / "logs" / f"{component}.log"
    return " | ".join(log.read_text().splitlines()[-lines:]) if log.exists() else "no log"


def _ready_nodes(cluster: LocalCluster) -> int:
    """Nodes whose Ready condition is True; fails at once when a component has died,
    since no node turns Ready without kwok-controller, nor without the API server."""
    died = processes.exited(cluster.directory / "pids")
    if died:
        tails = "; ".join(f"{name}: {_log_tail(cluster, name)}" for name in died)
        raise ClusterError(f"components of cluster {cluster.name!r} exited ({tails})")
    jsonpath = '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
    out = _kubectl(cluster, "get", "nodes", "-o", f"jsonpath={jsonpath}").stdout
    return out.split().count("True")


def _wait_nodes_ready(cluster: LocalCluster, nodes: int, timeout: float) -> None:
    try:
        wait_for(lambda: _ready_nodes(cluster), timeout, poll=0.2, until=lambda n: n >= nodes)
    except AssertionError:
        # Say what was seen, so that a slow start can be told from a stuck one.
        seen = _kubectl(cluster, "get", "nodes", "--no-headers").stdout.strip() or "no nodes"
        raise ClusterError(
            f"nodes of cluster {cluster.name!r} did not become Ready in {timeout:.0f}s "
            f"(nodes: {' ; '.join(seen.splitlines())}; "
            f"kwok-controller: {_log_tail(cluster, 'kwok-controller')})"
        ) from None


def _wait_default_serviceaccount(cluster: LocalCluster, timeout: float) -> None:
    # Pods cannot be created in a namespace until its "default" ServiceAccount exists.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _kubectl(cluster, "get", "serviceaccount", "default", "-n", "default").returncode == 0:
            return
        time.sleep(0.2)
    raise ClusterError(f"the ServiceAccount controller of {cluster.name!r} did not start")


def _arg(key: str, value: str, *, replace: bool = False) -> dict[str, object]:
    # kwokctl's "override" replaces an argument it already passes, and drops any other.
    return {"key": key, "value": value, "override": replace}


def real_node_patches(cluster: LocalCluster) -> list[dict[str, object]]:
    """kwokctl component patches that let a real kubelet join.

    The API server listens on every address (the node's firewall table admits loopback
    and the bridge only) and advertises the bridge's address, so pods reach it through
    the `kubernetes` Service; it reaches kubelets by InternalIP with a client
    certificate, verifying theirs. kwok leaves alone every node not annotated as fake.
    """
    pki = cluster.directory / "pki"
    network = cluster.network
    apiserver = [
        _arg("bind-address", "0.0.0.0", replace=True),
        _arg("advertise-address", network.node_ip),
        _arg("service-cluster-ip-range", network.service_cidr),
        _arg("kubelet-preferred-address-types", "InternalIP"),
        _arg("kubelet-client-certificate", str(pki / "admin.crt")),
        _arg("kubelet-client-key", str(pki / "admin.key")),
        _arg("kubelet-certificate-authority", str(pki / "ca.crt")),
        # The aggregation layer (metrics.k8s.io) authenticates the API server's proxy.
        _arg("requestheader-client-ca-file", str(pki / "ca.crt")),
        _arg("requestheader-allowed-names", "kwok-admin"),
        _arg("requestheader-username-headers", "X-Remote-User"),
        _arg("requestheader-group-headers", "X-Remote-Group"),
        _arg("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
    ]
    kwok = [
        _arg("manage-all-nodes", "false", replace=True),
        _arg("manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake"),
    ]
    return [
        {"name": "kube-apiserver", "extraArgs": apiserver},
        {"name": "kwok-controller", "extraArgs": kwok},
    ]


def _write_kwokctl_config(cluster: LocalCluster, real_node: bool) -> Path:
    # Every component listens on loopback only; kwokctl's default is all interfaces.
    path = kwok_workdir() / f"{cluster.name}-kwokctl.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, object] = {"bindAddress": "127.0.0.1"}
    config: dict[str, object] = {
        "kind": "KwokctlConfiguration",
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "options": options,
    }
    if real_node:
        network = cluster.network
        options["kubeApiserverCertSANs"] = [network.node_ip, network.kubernetes_service_ip]
        config["componentsPatches"] = real_node_patches(cluster)
    path.write_text(yaml.safe_dump(config))
    return path


def _start_provisioner(cluster: LocalCluster) -> None:
    processes.spawn(
        cluster.own_pids_dir,
        "provisioner",
        [
            sys.executable,
            "-m",
            "phaseshift.lab.provisioner",
            str(cluster.kubeconfig),
            str(cluster.volumes_dir),
        ],
        cluster.directory / "provisioner.log",
    )


def up(
    name: str = "phaseshift",
    *,
    nodes: int = 3,
    with_prometheus: bool = False,
    port: int = 0,
    timeout: float = 120.0,
    real_node: bool = False,
) -> LocalCluster:
    """Starts a cluster and waits until its nodes are Ready. Leaves nothing running on failure.

    With `real_node`, one real node named after the cluster joins it (beside `nodes`
    kwok nodes), and CoreDNS and metrics-server run on it before this returns.
    """
    cluster = LocalCluster(name)
    if cluster.is_running():
        raise ClusterError(
            f"a cluster named {name!r} is already running; "
            f"use it, or stop it with `phaseshift cluster down --name {name}`"
        )
    if port and port_open("127.0.0.1", port):
        raise ClusterError(f"port {port} on 127.0.0.1 is already in use; choose another --port")
    if real_node:
        _check_real_node_possible(cluster)
    try:
        bin_dir = binaries.ensure_built()
        node_bin_dir = binaries.ensure_node_built() if real_node else None
    except binaries.BinariesMissing as e:
        raise ClusterError(str(e)) from e
    if real_node:
        _ensure_node_images()
    if cluster.exists():
        # Left behind by a crash: clear it so the new cluster starts clean.
        down(name)
    try:
        _start_kwok_with_one_retry(cluster, bin_dir, nodes, port, timeout, real_node)
        if node_bin_dir is not None:
            _start_real_node(cluster, node_bin_dir)
            _wait_nodes_ready(cluster, nodes + 1, timeout)
        _wait_default_serviceaccount(cluster, timeout)
        if real_node:
            _install_node_addons(cluster, timeout)
        if with_prometheus:
            prometheus = PrometheusServer(cluster.prometheus_dir)
            prometheus.start()
    except BaseException:
        down(name)
        raise
    return cluster


def _start_kwok_with_one_retry(
    cluster: LocalCluster, bin_dir: Path, nodes: int, port: int, timeout: float, real_node: bool
) -> None:
    """The control plane with `nodes` Ready kwok nodes, and the provisioner; started a
    second time, from nothing, if it fails to start or its nodes do not turn Ready.

    kwokctl picks each component's port by probing it, with no lock across processes: a
    cluster that starts or stops at the same moment can take the port between the probe
    and the component's bind, and the component exits. A second start probes again."""
    try:
        _start_kwok(cluster, bin_dir, nodes, port, timeout, real_node)
    except ClusterError as first:
        print(f"starting cluster {cluster.name!r} again: {first}", file=sys.stderr)
        down(cluster.name)
        try:
            _start_kwok(cluster, bin_dir, nodes, port, timeout, real_node)
        except ClusterError as second:
            raise ClusterError(f"{second}; at the first start: {first}") from first


def _start_kwok(
    cluster: LocalCluster, bin_dir: Path, nodes: int, port: int, timeout: float, real_node: bool
) -> None:
    name = cluster.name
    args = [
        "create", "cluster", "--name", name, "--runtime", "binary",
        "--secure-port=true", "--kube-authorization=true", "--kube-admission=true",
        "--config", str(_write_kwokctl_config(cluster, real_node)),
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
    _kwokctl(bin_dir, *args)
    if nodes:
        _kwokctl(bin_dir, "scale", "node", "--name", name, "--replicas", str(nodes))
    _start_provisioner(cluster)
    # With a real node, kwok manages the fake nodes only: those are what it must ready.
    _wait_nodes_ready(cluster, nodes, timeout)


NODE_IMAGES = ("pause", "coredns", "metrics-server")


def _check_real_node_possible(cluster: LocalCluster) -> None:
    """Refuses, in one line and before anything changes, what cannot work here."""
    missing = node.missing_requirements()
    if missing:
        raise ClusterError("cannot start a real node: " + "; ".join(missing))
    clusters_dir = kwok_workdir() / "clusters"
    other = node.running_node_elsewhere(clusters_dir, cluster.name)
    if other:
        raise ClusterError(
            f"cluster {other!r} already runs a real node on this machine (one at most: the "
            f"kubelet owns host-wide paths); stop it with `phaseshift cluster down --name {other}`"
        )
    # A crashed node's processes are gone, so whatever holds these ports is not its.
    taken = node.taken_ports()
    if taken:
        raise ClusterError(
            f"the real node's ports {', '.join(map(str, taken))} are already in use "
            "(kubelet 10250/10248, kube-proxy 10249/10256); stop what listens there"
        )
    for crashed in node.crashed_nodes(clusters_dir, cluster.name):
        # Its bridge would claim the same subnet as the new one: clear what is left of it.
        print(f"clearing the real node that cluster {crashed!r} left behind", file=sys.stderr)
        left = LocalCluster(crashed)
        if left.is_running():
            node.teardown(left.network, left.node_paths, node.firewall_table_name(crashed))
            shutil.rmtree(left.node_paths.home, ignore_errors=True)
        else:
            down(crashed)


def _ensure_node_images() -> None:
    from phaseshift.lab import images

    try:
        images.build(NODE_IMAGES)
    except images.ImageError as e:
        raise ClusterError(f"cannot build the node's images: {e}") from e


def load_images(cluster: LocalCluster, names: Sequence[str]) -> None:
    """Builds the named images when their inputs changed and loads them into the
    cluster's real node, so pods that name them start without any registry."""
    from phaseshift.lab import images

    if not cluster.has_real_node():
        raise ClusterError(f"cluster {cluster.name!r} has no real node to load images into")
    try:
        images.build(names)
        images.load_into_containerd(names, cluster.node_paths.containerd_socket)
    except images.ImageError as e:
        raise ClusterError(str(e)) from e


def load_images_command(name: str, names: Sequence[str]) -> int:
    """`phaseshift images load [NAME...] --cluster N` (every image when none is named)."""
    from phaseshift.lab import images

    cluster = LocalCluster(name)
    if not cluster.is_running():
        print(f"phaseshift images load: no running cluster named {name!r}", file=sys.stderr)
        return 1
    wanted = list(names) or list(images.image_set())
    try:
        load_images(cluster, wanted)
    except ClusterError as e:
        print(f"phaseshift images load: {e}", file=sys.stderr)
        return 1
    print(f"loaded into the real node of {name!r}: {', '.join(wanted)}")
    return 0


def _start_real_node(cluster: LocalCluster, bin_dir: Path) -> None:
    from phaseshift.lab import images

    network, paths = cluster.network, cluster.node_paths
    _, port = cluster.server()
    node.prepare_host(network, paths, node.firewall_table_name(cluster.name), port)
    node.issue_certificates(cluster.directory / "pki", paths, cluster.name, network)
    node.start_containerd(paths, images.reference("pause"))
    images.load_into_containerd(NODE_IMAGES, paths.containerd_socket)
    server = f"https://{network.node_ip}:{port}"
    node.start_kubelet_and_proxy(bin_dir, network, paths, cluster.name, server)


def _install_node_addons(cluster: LocalCluster, timeout: float) -> None:
    from phaseshift.lab import images

    objects = nodeaddons.addons(
        cluster.network, images.reference("coredns"), images.reference("metrics-server")
    )
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "--server-side", "-f", "-"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"could not install CoreDNS and metrics-server: {result.stderr.strip()}")
    for deployment in ("coredns", "metrics-server"):
        status = _kubectl(
            cluster, "-n", nodeaddons.NAMESPACE, "rollout", "status", f"deployment/{deployment}",
            f"--timeout={int(timeout)}s",
        )  # fmt: skip
        if status.returncode != 0:
            gone = node.exited(cluster.node_paths)
            why = f" (exited: {', '.join(gone)})" if gone else ""
            raise ClusterError(
                f"{deployment} did not become available on the real node{why}: "
                f"{status.stderr.strip()}"
            )
    # HPAs read CPU once the aggregated metrics API answers (after a first scrape).
    metrics_api = _kubectl(
        cluster, "wait", "--for=condition=Available", "apiservice/v1beta1.metrics.k8s.io",
        f"--timeout={int(timeout)}s",
    )  # fmt: skip
    if metrics_api.returncode != 0:
        raise ClusterError(
            f"the metrics API did not become available: {metrics_api.stderr.strip()}"
        )


def down(name: str = "phaseshift") -> bool:
    """Stops every process of the cluster by PID and removes its files. True if any existed.

    A real node is torn down first and completely: its containers, mounts, network
    namespaces, bridge, firewall chains and cgroups, and the host settings it changed.
    """
    cluster = LocalCluster(name)
    if not cluster.exists():
        return False
    PrometheusServer(cluster.prometheus_dir).stop()
    if cluster.has_real_node():
        node.teardown(cluster.network, cluster.node_paths, node.firewall_table_name(name))
    # Read the PID files first: kwokctl removes the cluster's directory with them.
    pids = cluster.pids()
    if not binaries.missing():
        _kwokctl(binaries.bin_dir(), "delete", "cluster", "--name", name, check=False)
    # Ours (the provisioner) and whatever kwokctl could not stop. Wait until each is gone:
    # a cluster started next may probe the same ports, and must find them free.
    outlived = [pid for pid in pids if not processes.terminate(pid)]
    if outlived:
        print(f"cluster {name!r}: processes {outlived} outlived SIGKILL", file=sys.stderr)
    shutil.rmtree(cluster.directory, ignore_errors=True)
    (kwok_workdir() / f"{name}-kwokctl.yaml").unlink(missing_ok=True)
    return True


def up_command(
    name: str, *, nodes: int, with_prometheus: bool, port: int = 0, real_node: bool = False
) -> int:
    try:
        cluster = up(
            name, nodes=nodes, with_prometheus=with_prometheus, port=port, real_node=real_node
        )
    except ClusterError as e:
        print(f"phaseshift cluster up: {e}", file=sys.stderr)
        return 1
    if real_node:
        print(f"cluster {name!r} is up with a real node {name!r} and {nodes} kwok nodes, all Ready")
    else:
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
