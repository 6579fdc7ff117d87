"""Benchmark: the local control plane's start time, pod start time and memory.

    .venv/bin/python bench/cluster_startup.py [--runs 3] [--deployments 5] [--name bench-startup]

Prints, with the targets of the cluster issue side by side:

- warm `cluster up` (binaries already built and cached) until every node is Ready:
  median of --runs runs of `phaseshift.lab.cluster.up(name, nodes=3)`, each followed by
  `down` (target < 20 s);
- a 3-replica Deployment from creation to readyReplicas=3: median of --deployments
  Deployments, each in a fresh namespace (target < 5 s);
- resident memory of the whole control plane (etcd, kube-apiserver, controller-manager,
  scheduler, kwok, the volume provisioner): the sum of VmRSS over the cluster's PIDs,
  measured after the Deployments ran (target < 1.5 GiB).

It starts and stops its own cluster (--name); it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

from kubernetes import client, config

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab.wait import wait_for

GiB = 1024**3
MiB = 1024**2
NODES = 3
REPLICAS = 3


def time_cluster_up(name: str) -> float:
    started = time.monotonic()
    local_cluster.up(name, nodes=NODES)
    return time.monotonic() - started


def deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(name="app", image="registry.example/bench:1")
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=REPLICAS,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def fresh_namespace(core: client.CoreV1Api) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the namespace's default ServiceAccount exists; that wait is
    # namespace setup, not pod start, so it stays outside the timed part.
    wait_for(
        lambda: core.list_namespaced_service_account(name).items,
        30,
        f"the default ServiceAccount of namespace {name}",
        poll=0.05,
    )
    return name


def time_deployment_ready(api: client.ApiClient, timeout: float = 60.0) -> float:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    namespace = fresh_namespace(core)
    started = time.monotonic()
    apps.create_namespaced_deployment(namespace, deployment("web"))
    wait_for(
        lambda: apps.read_namespaced_deployment_status("web", namespace).status,
        timeout,
        f"the Deployment in {namespace} Ready",
        poll=0.02,
        until=lambda status: status is not None and (status.ready_replicas or 0) >= REPLICAS,
    )
    elapsed = time.monotonic() - started
    core.delete_namespace(namespace)
    return elapsed


def rss_bytes(pid: int) -> int:
    """VmRSS of one process from /proc, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def control_plane_rss(cluster: local_cluster.LocalCluster) -> dict[str, int]:
    """RSS per component, named after the PID file that tracks it."""
    pid_files = [
        *(cluster.directory / "pids").glob("*.pid"),
        *cluster.own_pids_dir.glob("*.pid"),
    ]
    by_component = {}
    for pid_file in pid_files:
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        by_component[pid_file.stem] = rss_bytes(pid)
    return by_component


def row(label: str, figure: str, target: str, met: bool) -> str:
    return f"  {label:<44} {figure:>12}   {target:<10} {'met' if met else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cluster up/down cycles")
    parser.add_argument("--deployments", type=int, default=5, help="Deployments timed")
    parser.add_argument("--name", default="bench-startup", help="cluster name to use")
    args = parser.parse_args()

    if local_cluster.LocalCluster(args.name).is_running():
        raise SystemExit(f"a cluster named {args.name!r} is already running; choose --name")

    up_times: list[float] = []
    deploy_times: list[float] = []
    rss: dict[str, int] = {}
    try:
        for run in range(args.runs):
            up_times.append(time_cluster_up(args.name))
            print(f"cluster up #{run + 1}: {up_times[-1]:.2f} s", flush=True)
            if run < args.runs - 1:
                local_cluster.down(args.name)
        cluster = local_cluster.LocalCluster(args.name)
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        for n in range(args.deployments):
            deploy_times.append(time_deployment_ready(api))
            print(f"Deployment Ready #{n + 1}: {deploy_times[-1]:.2f} s", flush=True)
        rss = control_plane_rss(cluster)
    finally:
        local_cluster.down(args.name)

    up_median = statistics.median(up_times)
    deploy_median = statistics.median(deploy_times)
    total_rss = sum(rss.values())
    print()
    print(f"control plane RSS by process (after {args.deployments} Deployments):")
    for component, size in sorted(rss.items(), key=lambda kv: -kv[1]):
        print(f"  {component:<28} {size / MiB:8.1f} MiB")
    print()
    print(f"  {'measure':<44} {'figure':>12}   {'target':<10} verdict")
    print(
        row(
            f"cluster up, {NODES} nodes Ready (median of {len(up_times)})",
            f"{up_median:.2f} s",
            "< 20 s",
            up_median < 20,
        )
    )
    print(
        row(
            f"{REPLICAS}-replica Deployment Ready (median of {len(deploy_times)})",
            f"{deploy_median:.2f} s",
            "< 5 s",
            deploy_median < 5,
        )
    )
    print(
        row(
            "control plane RSS (sum of VmRSS)",
            f"{total_rss / GiB:.2f} GiB",
            "< 1.5 GiB",
            total_rss < 1.5 * GiB,
        )
    )
    print(
        f"  (cluster up min/max {min(up_times):.2f}/{max(up_times):.2f} s; "
        f"Deployment min/max {min(deploy_times):.2f}/{max(deploy_times):.2f} s)"
    )


if __name__ == "__main__":
    main()
