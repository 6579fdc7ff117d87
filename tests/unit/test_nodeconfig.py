"""The real node's configuration, as data: what containerd, the kubelet, kube-proxy, CNI
and the firewall are told, and what the host check refuses."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from phaseshift.lab import node, nodeaddons, nodeconfig
from phaseshift.lab.cluster import LocalCluster, real_node_patches
from phaseshift.lab.nodeconfig import NodeNetwork, NodePaths, bridge_name

NETWORK = NodeNetwork(bridge="ps-demo")
PATHS = NodePaths(home=Path("/c/node"), run=Path("/run/phaseshift-demo"))


def test_addresses_follow_from_the_subnets() -> None:
    assert NETWORK.node_ip == "10.244.0.1"
    assert NETWORK.prefix_length == 24
    assert NETWORK.kubernetes_service_ip == "10.96.0.1"
    assert NETWORK.dns_service_ip == "10.96.0.10"


def test_bridge_names_fit_a_linux_interface_name() -> None:
    assert bridge_name("demo") == "ps-demo"
    assert len(bridge_name("a-very-long-cluster-name")) == 15


def test_containerd_keeps_everything_under_the_node_and_restricts_oom_scores() -> None:
    toml = nodeconfig.containerd_config(PATHS, "localhost/phaseshift/pause:3.10")
    assert 'root = "/c/node/containerd"' in toml
    assert 'address = "/run/phaseshift-demo/containerd.sock"' in toml
    assert "restrict_oom_score_adj = true" in toml
    assert "netns_mounts_under_state_dir = true" in toml
    assert 'sandbox_image = "localhost/phaseshift/pause:3.10"' in toml
    assert 'conf_dir = "/c/node/cni/net.d"' in toml


def test_pods_get_addresses_on_the_bridge_and_no_masquerade() -> None:
    conflist = json.loads(nodeconfig.cni_conflist(NETWORK, PATHS))
    bridge, portmap = conflist["plugins"]
    assert bridge["bridge"] == "ps-demo"
    assert bridge["ipMasq"] is False
    assert bridge["hairpinMode"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]
    assert bridge["ipam"]["dataDir"] == "/c/node/cni/ipam"
    assert portmap["capabilities"] == {"portMappings": True}


def test_kubelet_fits_this_machine_and_admits_only_authenticated_callers() -> None:
    config = yaml.safe_load(nodeconfig.kubelet_config(NETWORK, PATHS))
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failSwapOn"] is False
    assert config["address"] == "10.244.0.1"
    assert config["clusterDNS"] == ["10.96.0.10"]
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["x509"]["clientCAFile"] == "/c/node/pki/ca.crt"
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0
    assert config["podLogsDir"] == "/c/node/pod-logs"
    assert config["containerRuntimeEndpoint"] == "unix:///run/phaseshift-demo/containerd.sock"


def test_kube_proxy_uses_nftables_and_leaves_conntrack_alone() -> None:
    config = yaml.safe_load(nodeconfig.kube_proxy_config(NETWORK, PATHS, "demo"))
    assert config["mode"] == "nftables"
    assert config["nodePortAddresses"] == ["10.244.0.1/32"]
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["hostnameOverride"] == "demo"


def test_firewall_keeps_pod_traffic_on_the_bridge() -> None:
    script = nodeconfig.firewall_table(NETWORK, "phaseshift_demo", 32000)
    assert script.startswith("table inet phaseshift_demo {")
    assert 'iifname "ps-demo" oifname != "ps-demo" drop' in script
    assert 'tcp dport 32000 iifname != { "lo", "ps-demo" } drop' in script
    assert "ip daddr 10.96.0.0/16 drop" in script


def test_api_server_is_patched_to_reach_the_kubelet_and_kwok_to_leave_it_alone() -> None:
    patches = {p["name"]: p["extraArgs"] for p in real_node_patches(LocalCluster("demo"))}
    apiserver = {a["key"]: a["value"] for a in patches["kube-apiserver"]}  # type: ignore[index]
    assert apiserver["advertise-address"] == "10.244.0.1"
    assert apiserver["kubelet-preferred-address-types"] == "InternalIP"
    assert apiserver["kubelet-client-certificate"].endswith("/pki/admin.crt")
    assert apiserver["service-cluster-ip-range"] == "10.96.0.0/16"
    kwok = {a["key"]: a["value"] for a in patches["kwok-controller"]}  # type: ignore[index]
    assert kwok == {
        "manage-all-nodes": "false",
        "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake",
    }


def _fake_root(
    tmp_path: Path, *, overlay: bool = True, bridge_nf: bool = True, memory: bool = True
) -> Path:
    (tmp_path / "proc/sys/net/ipv4").mkdir(parents=True)
    (tmp_path / "proc/sys/net/ipv4/ip_forward").write_text("0\n")
    (tmp_path / "proc/filesystems").write_text(
        "nodev\tcgroup\n" + ("nodev\toverlay\n" if overlay else "")
    )
    if bridge_nf:
        (tmp_path / "proc/sys/net/bridge").mkdir(parents=True)
        (tmp_path / "proc/sys/net/bridge/bridge-nf-call-iptables").write_text("0\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    if memory:
        (tmp_path / "sys/fs/cgroup/memory").mkdir()
    return tmp_path


def test_a_complete_kernel_passes_the_check(tmp_path: Path) -> None:
    assert node.missing_kernel_features(_fake_root(tmp_path)) == []


def test_each_missing_kernel_feature_is_named(tmp_path: Path) -> None:
    missing = node.missing_kernel_features(
        _fake_root(tmp_path, overlay=False, bridge_nf=False, memory=False)
    )
    assert len(missing) == 3
    assert any("overlay" in line for line in missing)
    assert any("br_netfilter" in line for line in missing)
    assert any("memory cgroup" in line for line in missing)


def test_a_cgroup_v2_memory_controller_counts(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, memory=False)
    (root / "sys/fs/cgroup/cgroup.controllers").write_text("cpu io memory pids\n")
    assert node.missing_kernel_features(root) == []


def test_addons_run_with_explicit_commands_and_the_dns_service_address() -> None:
    objects = nodeaddons.addons(
        NETWORK, "localhost/phaseshift/coredns:v1", "localhost/phaseshift/metrics-server:v2"
    )
    by_kind_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    dns = by_kind_name[("Service", "kube-dns")]
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    for name in ("coredns", "metrics-server"):
        container = by_kind_name[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][0] == f"/{name}"
    assert "forward" not in nodeaddons.COREFILE  # nothing resolves beyond the cluster
    assert ("APIService", "v1beta1.metrics.k8s.io") in by_kind_name
