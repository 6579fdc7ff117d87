"""What a real node's processes are told, as data: pure builders, one per file they read.

`phaseshift cluster up --real-node` runs containerd, a kubelet and kube-proxy on this
machine beside the local control plane. Everything they are configured with is built
here from a `NodeNetwork` and a `NodePaths`, so it can be read and tested without
starting anything; `lab/node.py` writes these files and starts the processes.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The pods' subnet is one /24 on one bridge: one node. Services get their own range
# (the API server's --service-cluster-ip-range) so the two never overlap.
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249


@dataclass(frozen=True)
class NodeNetwork:
    """The addresses of one real node: its bridge, its pods and the Services."""

    bridge: str
    pod_cidr: str = POD_CIDR
    service_cidr: str = SERVICE_CIDR

    @property
    def node_ip(self) -> str:
        """The bridge's own address: the node's InternalIP, the pods' gateway."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def prefix_length(self) -> int:
        return ipaddress.ip_network(self.pod_cidr).prefixlen

    def service_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + index)

    @property
    def kubernetes_service_ip(self) -> str:
        return self.service_ip(1)

    @property
    def dns_service_ip(self) -> str:
        return self.service_ip(10)


def bridge_name(cluster: str) -> str:
    """A Linux interface name (at most 15 bytes) that says which cluster made it."""
    return ("ps-" + cluster)[:15]


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its files. `run` is short: shim sockets live under it."""

    home: Path  # under the cluster's directory: configs, certificates, data, logs
    run: Path  # under /run: containerd's state and socket

    @property
    def containerd_config(self) -> Path:
        return self.home / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        return self.home / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def cni_conf_dir(self) -> Path:
        return self.home / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.home / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.home / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.home / "pod-logs"

    @property
    def pki(self) -> Path:
        return self.home / "pki"

    @property
    def kubelet_config(self) -> Path:
        return self.home / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.home / "kubelet.kubeconfig"

    @property
    def proxy_config(self) -> Path:
        return self.home / "kube-proxy.yaml"

    @property
    def proxy_kubeconfig(self) -> Path:
        return self.home / "kube-proxy.kubeconfig"

    @property
    def saved_state(self) -> Path:
        """What the host looked like before the node changed it; `down` restores it."""
        return self.home / "host-before.json"


CNI_BIN_DIR = "/usr/lib/cni"
CNI_NETWORK = "phaseshift"


def containerd_config(paths: NodePaths, sandbox_image: str) -> str:
    """containerd's TOML (config version 2). Written by hand: three tables and no quoting
    subtleties, so no TOML library is needed."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f'root = "{paths.containerd_root}"',
        f'state = "{paths.containerd_state}"',
        "[grpc]",
        f'  address = "{paths.containerd_socket}"',
        "[ttrpc]",
        f'  address = "{paths.containerd_socket}.ttrpc"',
        "[debug]",
        '  level = "warn"',
        # containerd's plugins' own files under the node too, not /opt/containerd.
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{paths.home / "opt"}"',
        # Without CAP_SYS_RESOURCE a negative oom_score_adj is refused: every sandbox
        # would fail with "can't get final child's PID from pipe: EOF".
        f"[{cri}]",
        f'  sandbox_image = "{sandbox_image}"',
        "  restrict_oom_score_adj = true",
        # Network namespaces under the node's state, not /run/netns: down finds them all.
        "  netns_mounts_under_state_dir = true",
        "  enable_unprivileged_ports = true",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{paths.cni_conf_dir}"',
        "  max_conf_num = 1",
    ]
    return "\n".join(lines) + "\n"


def cni_conflist(network: NodeNetwork, paths: NodePaths) -> str:
    """One bridge, addresses from host-local, hostPorts by portmap.

    No masquerade: pods talk to each other, to Services and to the node, and nothing
    leaves the bridge (the node's firewall table drops the rest).
    """
    conflist = {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [[{"subnet": network.pod_cidr, "gateway": network.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    return json.dumps(conflist, indent=2) + "\n"


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubelet_config(network: NodeNetwork, paths: NodePaths) -> str:
    """The KubeletConfiguration this machine needs (cgroup v1, no systemd, no swap rule)."""
    pki = paths.pki
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        # Only the API server (with its client certificate) and callers it authorizes
        # may use the kubelet's API: logs, exec, port-forward, metrics.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [network.dns_service_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": True,
        # This machine has cgroup v1 only; kubelet 1.35 refuses it unless told.
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(paths.pod_logs),
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 110,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        # Small disks and a busy CI machine must not evict the tests' pods.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "registerNode": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "staticPodPath": "",
    }  # fmt: skip
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(network: NodeNetwork, paths: NodePaths, node_name: str) -> str:
    """kube-proxy in nftables mode (no IPVS in this kernel): its rules live in its own
    tables, which `down` deletes whole."""
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(paths.proxy_kubeconfig)},
        "hostnameOverride": node_name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        "clusterCIDR": network.pod_cidr,
        # NodePorts answer on the node's bridge address only.
        "nodePortAddresses": [f"{network.node_ip}/32"],
        # Leave the host's conntrack limits and timeouts as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def firewall_table(network: NodeNetwork, table: str, apiserver_port: int) -> str:
    """The node's own nftables table (an `nft -f` script).

    Traffic from pods reaches pods, Services (after kube-proxy's DNAT) and the node,
    never anything beyond the bridge; the API server, which listens on every address
    so that pods reach it, is reachable from loopback and the bridge only; and the
    host never sends to a Service address nobody translated.
    """
    bridge, pods, services = network.bridge, network.pod_cidr, network.service_cidr
    return "\n".join(
        [
            f"table inet {table} {{",
            "  chain forward {",
            "    type filter hook forward priority -10; policy accept;",
            f'    iifname "{bridge}" oifname != "{bridge}" drop',
            f'    oifname "{bridge}" iifname != "{bridge}" drop',
            "  }",
            "  chain input {",
            "    type filter hook input priority -10; policy accept;",
            f'    tcp dport {apiserver_port} iifname != {{ "lo", "{bridge}" }} drop',
            f'    tcp dport {KUBELET_PORT} iifname != {{ "lo", "{bridge}" }} drop',
            "  }",
            # After kube-proxy's DNAT and the route it implies (the output hook still
            # sees the route taken before the translation).
            "  chain postrouting {",
            "    type filter hook postrouting priority 10; policy accept;",
            f"    ip daddr {services} drop",
            f'    ip daddr {pods} oifname != {{ "lo", "{bridge}" }} drop',
            "  }",
            "}",
            "",
        ]
    )
