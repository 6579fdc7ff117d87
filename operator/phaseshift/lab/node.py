"""A real node on this machine: containerd, kubelet and kube-proxy beside the local
control plane, pods on a bridge the cluster creates.

`prepare_host` records what the host looked like, then makes the bridge, the firewall
table and the sysctls the node needs; `start` writes certificates and configs
(`lab/nodeconfig.py`) and starts the three processes by PID file; `teardown` stops
them and every container, and removes what they made — mounts, network namespaces,
nftables and iptables chains, cgroups, the bridge, the kubelet's host directories —
and puts the recorded sysctls back. `teardown` works from files alone, so it also
cleans up after a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from phaseshift.lab import nodeconfig, processes
from phaseshift.lab.nodeconfig import NodeNetwork, NodePaths

# Host settings the node (or the kubelet itself, at start) changes; `down` restores them.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
)
# What the node itself needs set; the kubelet sets the rest it wants.
NODE_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
}
# Directories the kubelet creates on the host whatever its --root-dir says.
KUBELET_HOST_DIRS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PACKAGES_HINT = "apt-get install containerd runc containernetworking-plugins nftables iptables"
COMMANDS = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "nft",
    "iptables",
    "ip",
    "openssl",
)
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
PROCESS_NAMES = ("containerd", "kubelet", "kube-proxy")


class NodeError(RuntimeError):
    """The real node cannot start here; the message says why and what to do."""


def node_paths(cluster_dir: Path, cluster_name: str) -> NodePaths:
    return NodePaths(home=cluster_dir / "node", run=Path("/run") / f"phaseshift-{cluster_name}")


def firewall_table_name(cluster_name: str) -> str:
    return "phaseshift_" + cluster_name.replace("-", "_")


# -- before anything changes -------------------------------------------------------------


def missing_requirements(root: Path = Path("/")) -> list[str]:
    """What this machine lacks for a real node, one line each; empty when nothing.

    `root` is where /proc and /sys are looked up, so the check can be tested.
    """
    missing = []
    if os.geteuid() != 0:
        missing.append(
            "the real node needs root: containerd, the kubelet and the CNI plugins change the host"
        )
    absent = [c for c in COMMANDS if shutil.which(c) is None]
    if absent:
        missing.append(f"missing commands: {', '.join(absent)} ({PACKAGES_HINT})")
    plugins = [p for p in CNI_PLUGINS if not (Path(nodeconfig.CNI_BIN_DIR) / p).exists()]
    if plugins:
        missing.append(
            f"missing CNI plugins in {nodeconfig.CNI_BIN_DIR}: {', '.join(plugins)} ({PACKAGES_HINT})"
        )
    missing.extend(missing_kernel_features(root))
    return missing


def missing_kernel_features(root: Path = Path("/")) -> list[str]:
    filesystems = _read(root / "proc/filesystems")
    missing = []
    if "overlay" not in filesystems.split():
        missing.append(
            "the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)"
        )
    if not (root / "proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        missing.append(
            "the kernel has no bridge netfilter (br_netfilter): Services would not reach pods on the bridge"
        )
    memory_v1 = (root / "sys/fs/cgroup/memory").is_dir()
    memory_v2 = "memory" in _read(root / "sys/fs/cgroup/cgroup.controllers").split()
    if not (memory_v1 or memory_v2):
        missing.append(
            "no memory cgroup controller is mounted at /sys/fs/cgroup: pod limits could not be enforced"
        )
    if not (root / "proc/sys/net/ipv4/ip_forward").exists():
        missing.append("the kernel has no IPv4 forwarding")
    return missing  # fmt: skip


def taken_ports() -> list[int]:
    """The node's fixed ports that something else already listens on."""
    ports = (
        nodeconfig.KUBELET_PORT,
        nodeconfig.KUBELET_HEALTHZ_PORT,
        nodeconfig.PROXY_HEALTHZ_PORT,
        nodeconfig.PROXY_METRICS_PORT,
    )
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As the servers do: connections of a stopped node in TIME_WAIT are no owner.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                taken.append(port)
    return taken


def running_node_elsewhere(clusters_dir: Path, name: str) -> str | None:
    """The cluster already running a real node on this machine, if any (one at most:
    the kubelet owns host-wide paths such as /var/lib/kubelet)."""
    for other in _other_nodes(clusters_dir, name):
        pid = processes.recorded_pid(clusters_dir / other / "node" / "pids", "kubelet")
        if pid is not None and processes.alive(pid):
            return other
    return None


def crashed_nodes(clusters_dir: Path, name: str) -> list[str]:
    """Other clusters whose real node's processes are gone but whose bridge, tables and
    sysctls may be left: a machine that rebooted, or processes killed without `down`."""
    crashed = []
    for other in _other_nodes(clusters_dir, name):
        pid = processes.recorded_pid(clusters_dir / other / "node" / "pids", "kubelet")
        if pid is None or not processes.alive(pid):
            crashed.append(other)
    return crashed


def _other_nodes(clusters_dir: Path, name: str) -> list[str]:
    return sorted(
        home.parent.name for home in clusters_dir.glob("*/node") if home.parent.name != name
    )


# -- the host ------------------------------------------------------------------------------


def prepare_host(network: NodeNetwork, paths: NodePaths, table: str, apiserver_port: int) -> None:
    """Records the host's state, then creates the bridge, the firewall table and sysctls."""
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.run.mkdir(parents=True, exist_ok=True)
    if not paths.saved_state.exists():
        saved = {
            "sysctls": {key: _read(Path("/proc/sys") / key).strip() for key in SYSCTLS},
            "host_dirs_present": [d for d in KUBELET_HOST_DIRS if Path(d).exists()],
            "nft_tables": nft_tables(),
        }
        paths.saved_state.write_text(json.dumps(saved, indent=2))
    for key, value in NODE_SYSCTLS.items():
        _write_sysctl(key, value)
    if not Path("/sys/class/net", network.bridge).exists():
        _run("ip", "link", "add", network.bridge, "type", "bridge")
    _run(
        "ip", "addr", "replace", f"{network.node_ip}/{network.prefix_length}", "dev", network.bridge
    )
    _run("ip", "link", "set", network.bridge, "up")
    _run("nft", "-f", "-", stdin=nodeconfig.firewall_table(network, table, apiserver_port))


# -- certificates --------------------------------------------------------------------------


def issue_certificates(
    ca_dir: Path, paths: NodePaths, node_name: str, network: NodeNetwork
) -> None:
    """Client and serving certificates from the cluster's CA: the kubelet as
    system:node:<name> (the Node authorizer's identity), kube-proxy as system:kube-proxy."""
    pki = paths.pki
    pki.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca_dir / "ca.crt", pki / "ca.crt")
    _issue(
        ca_dir,
        pki,
        "kubelet",
        f"/O=system:nodes/CN=system:node:{node_name}",
        "clientAuth,serverAuth",
        f"DNS:{node_name},IP:{network.node_ip}",
    )
    _issue(ca_dir, pki, "kube-proxy", "/CN=system:kube-proxy", "clientAuth", None)  # fmt: skip


def _issue(ca_dir: Path, pki: Path, name: str, subject: str, usage: str, sans: str | None) -> None:
    key, csr, crt, ext = (pki / f"{name}{suffix}" for suffix in (".key", ".csr", ".crt", ".ext"))
    extensions = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        extensions.append(f"subjectAltName={sans}")
    ext.write_text("\n".join(extensions) + "\n")
    _run(
        "openssl",
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-subj",
        subject,
        "-out",
        str(csr),
    )
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"),
         "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "365",
         "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    csr.unlink()
    ext.unlink()


# -- the processes -------------------------------------------------------------------------


def start_containerd(paths: NodePaths, sandbox_image: str) -> None:
    """Starts containerd and waits for its socket, so images can be loaded before the
    kubelet asks for them."""
    paths.containerd_config.write_text(nodeconfig.containerd_config(paths, sandbox_image))
    log = paths.home / "logs" / "containerd.log"
    processes.spawn(
        paths.home / "pids",
        "containerd",
        ["containerd", "--config", str(paths.containerd_config)],
        log,
    )
    wait_for_socket(paths.containerd_socket, "containerd", log)


def start_kubelet_and_proxy(
    bin_dir: Path, network: NodeNetwork, paths: NodePaths, node_name: str, server: str
) -> None:
    """Writes the kubelet's and kube-proxy's configs and the CNI network, then starts both."""
    pki = paths.pki
    paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (paths.cni_conf_dir / "10-phaseshift.conflist").write_text(
        nodeconfig.cni_conflist(network, paths)
    )
    paths.kubelet_config.write_text(nodeconfig.kubelet_config(network, paths))
    paths.proxy_config.write_text(nodeconfig.kube_proxy_config(network, paths, node_name))
    paths.kubelet_kubeconfig.write_text(
        nodeconfig.kubeconfig(
            server,
            pki / "ca.crt",
            pki / "kubelet.crt",
            pki / "kubelet.key",
            f"system:node:{node_name}",
        )
    )
    paths.proxy_kubeconfig.write_text(nodeconfig.kubeconfig(
        server, pki / "ca.crt", pki / "kube-proxy.crt", pki / "kube-proxy.key", "system:kube-proxy"))  # fmt: skip
    pids, logs = paths.home / "pids", paths.home / "logs"
    processes.spawn(pids, "kubelet", [
        str(bin_dir / "kubelet"),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubelet_kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--hostname-override={node_name}",
        f"--node-ip={network.node_ip}",
        "--v=1",
    ], logs / "kubelet.log")  # fmt: skip
    processes.spawn(pids, "kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={paths.proxy_config}"],
                    logs / "kube-proxy.log")  # fmt: skip


def wait_for_socket(path: Path, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.05)
    tail = "\n".join(_read(log).splitlines()[-5:])
    raise NodeError(f"{what} did not open {path} within {timeout:.0f}s; its log ends:\n{tail}")


def exited(paths: NodePaths) -> list[str]:
    """The node's processes that were started and are no longer running."""
    return processes.exited(paths.home / "pids", PROCESS_NAMES)


# -- teardown ------------------------------------------------------------------------------


def teardown(network: NodeNetwork, paths: NodePaths, table: str) -> None:
    """Stops the node and removes everything it made. Safe to run twice, or after a crash."""
    pids = paths.home / "pids"
    for name in ("kubelet", "kube-proxy"):
        pid = processes.recorded_pid(pids, name)
        if pid is not None:
            processes.terminate(pid)
    _kill_cgroup_processes(_kubepods_cgroups())
    for pid in processes_mentioning(str(paths.containerd_socket)):
        processes.terminate(pid, grace=2.0)
    pid = processes.recorded_pid(pids, "containerd")
    if pid is not None:
        processes.terminate(pid)
    _kill_cgroup_processes(_kubepods_cgroups())
    _unmount_under([paths.home, paths.run, *[Path(d) for d in KUBELET_HOST_DIRS]])
    for family_table in (f"inet {table}", "ip kube-proxy", "ip6 kube-proxy"):
        _run_quiet("nft", "delete", "table", *family_table.split())
    for tool in ("iptables", "ip6tables"):
        _remove_chains(tool, prefixes=("KUBE-", "CNI-"))
    _remove_tables_made_since(paths)
    _remove_bridge(network.bridge)
    _remove_cgroups(_kubepods_cgroups())
    _restore_host(paths)
    shutil.rmtree(paths.run, ignore_errors=True)


def nft_tables() -> list[str]:
    """The host's nftables tables, as "family name"."""
    listing = _run_quiet("nft", "list", "tables") or ""
    return [
        line.removeprefix("table ").strip()
        for line in listing.splitlines()
        if line.startswith("table ")
    ]


def _remove_tables_made_since(paths: NodePaths) -> None:
    # iptables-nft creates the tables it is first asked about (filter, nat, mangle...):
    # once the node's chains are gone, those the host did not have before are empty.
    try:
        before = set(json.loads(paths.saved_state.read_text()).get("nft_tables", []))
    except (FileNotFoundError, json.JSONDecodeError):
        return
    for family_table in nft_tables():
        if family_table not in before:
            _run_quiet("nft", "delete", "table", *family_table.split())


def _restore_host(paths: NodePaths) -> None:
    try:
        saved = json.loads(paths.saved_state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    for key, value in saved.get("sysctls", {}).items():
        if value:
            _write_sysctl(key, value)
    present = set(saved.get("host_dirs_present", []))
    for directory in KUBELET_HOST_DIRS:
        if directory not in present:
            shutil.rmtree(directory, ignore_errors=True)


def _kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup, deepest first, in every hierarchy (v1 and the unified one)."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        top = hierarchy / "kubepods"
        if top.is_dir():
            found.extend(p for p in top.rglob("*") if p.is_dir())
            found.append(top)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _kill_cgroup_processes(cgroups: Sequence[Path], rounds: int = 20) -> None:
    for _ in range(rounds):
        pids = {
            int(pid)
            for cg in cgroups
            for pid in _read(cg / "cgroup.procs").split()
            if pid.isdigit()
        }
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        time.sleep(0.1)


def _remove_cgroups(cgroups: Iterable[Path]) -> None:
    for cgroup in cgroups:
        try:
            cgroup.rmdir()
        except OSError:
            continue


def processes_mentioning(text: str) -> list[int]:
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points below any of `roots`, deepest first."""
    prefixes = [str(root.resolve()) if root.exists() else str(root) for root in roots]
    points = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _unmount_under(roots: Sequence[Path]) -> None:
    for _ in range(3):  # a lazy unmount can uncover a mount below it
        points = mounts_under(roots)
        if not points:
            return
        for point in points:
            _run_quiet("umount", "-l", point)


def _remove_chains(tool: str, prefixes: tuple[str, ...]) -> None:
    """Deletes the chains the kubelet and the CNI portmap plugin add to the host's
    iptables tables, and the rules that jump to them; nothing else."""
    for table in ("filter", "nat", "mangle"):
        listing = _run_quiet(tool, "-t", table, "-S")
        if listing is None:
            continue
        rules = listing.splitlines()
        for rule in rules:
            parts = rule.split()
            if parts[:1] == ["-A"] and any(p.startswith(prefixes) for p in parts[1:] if p != parts[1]) \
                    and not parts[1].startswith(prefixes):  # fmt: skip
                _run_quiet(tool, "-t", table, "-D", *parts[1:])
        chains = [
            r.split()[1] for r in rules if r.startswith("-N ") and r.split()[1].startswith(prefixes)
        ]
        for chain in chains:
            _run_quiet(tool, "-t", table, "-F", chain)
        for chain in chains:
            _run_quiet(tool, "-t", table, "-X", chain)


def _remove_bridge(bridge: str) -> None:
    links = _run_quiet("ip", "-o", "link", "show", "master", bridge) or ""
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        _run_quiet("ip", "link", "delete", name)
    _run_quiet("ip", "link", "delete", bridge)


# -- small helpers -------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key
    try:
        path.write_text(value)
    except OSError as e:
        if key in NODE_SYSCTLS:
            raise NodeError(f"cannot set {key.replace('/', '.')}={value}: {e}") from e


def _run(*argv: str, stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(
            f"{' '.join(argv[:4])} failed: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def _run_quiet(*argv: str) -> str | None:
    """Runs a cleanup command whose failure only means there was nothing to clean."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return result.stdout if result.returncode == 0 else None
