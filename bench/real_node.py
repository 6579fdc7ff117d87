"""Benchmark: the real node — image builds, start time, pod start time and memory.

    .venv/bin/python bench/real_node.py [--runs 3] [--pods 20] [--no-builds] [--rootfs] [--name bench-node]

Prints, with the real-node issue's targets side by side:

- per image, the cold build time (rebuilt from its Dockerfile with its inputs
  unchanged) and the warm one (inputs unchanged: kept), and a rebuild of the whole set
  with nothing changed (target < 10 s) — bench/image_builds.py's report; `--rootfs`
  also times debootstrap, `--no-builds` skips the section;
- warm `cluster up --real-node` (binaries and images built) to the node being Ready
  (target < 30 s), and to CoreDNS and metrics-server available: median of --runs;
- create -> Ready for --pods pods created at once, p50 and p95 (target p50 < 3 s):
  first idle pods (pause: what the node itself costs), then the sample app's (Ready
  when it answers: 20 Python servers starting on 2 cores are bound by the CPU);
- resident memory of the kubelet plus containerd (and its shims) with those pods running.

It starts and stops its own cluster (--name); it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

from cluster_startup import fresh_namespace, row, rss_bytes
from image_builds import report as report_image_builds
from kubernetes import client, config

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab import images, node, processes
from phaseshift.lab.wait import wait_for

MiB = 1024**2


def node_ready(kubeconfig: Path, name: str) -> bool:
    if not kubeconfig.exists():
        return False
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        conditions = core.read_node(name).status.conditions or []
    except Exception:  # not registered yet, or the API server still starting
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def time_up(name: str) -> tuple[float, float]:
    """Seconds from `up` to the node Ready, and to `up` returning (add-ons available)."""
    cluster = local_cluster.LocalCluster(name)
    started = time.monotonic()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            local_cluster.up(name, nodes=0, real_node=True)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    ready_at = None
    while thread.is_alive():
        if ready_at is None and node_ready(cluster.kubeconfig, name):
            ready_at = time.monotonic() - started
        time.sleep(0.1)
    thread.join()
    if errors:
        raise errors[0]
    done = time.monotonic() - started
    return ready_at if ready_at is not None else done, done


def app_container(image: str) -> client.V1Container:
    """The sample app, Ready when it answers /readyz: node overhead plus Python's start."""
    return client.V1Container(
        name="app",
        image=image,
        image_pull_policy="Never",
        command=["python", "-m", "sample_app", "serve"],
        env=[client.V1EnvVar(name="DATABASE_URL", value="sqlite:////tmp/app.db")],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/readyz", port=8080), period_seconds=1
        ),
        resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "48Mi"}),
    )


def minimal_container(image: str) -> client.V1Container:
    """A container that only sleeps (pause): the node's own start-up cost."""
    return client.V1Container(
        name="idle", image=image, image_pull_policy="Never", command=["/pause"]
    )


def pod(name: str, container: client.V1Container) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(containers=[container])
    )


def pods_ready(
    api: client.ApiClient, count: int, container: client.V1Container, timeout: float = 300.0
) -> list[float]:
    """Create -> Ready seconds of `count` pods created together."""
    core = client.CoreV1Api(api)
    namespace = fresh_namespace(core)
    created: dict[str, float] = {}
    for n in range(count):
        name = f"p{n}"
        core.create_namespaced_pod(namespace, pod(name, container))
        created[name] = time.monotonic()
    ready: dict[str, float] = {}

    def note_ready() -> int:
        """Records when each pod was first seen Ready; returns how many are."""
        for item in core.list_namespaced_pod(namespace).items:
            name = item.metadata.name
            conditions = item.status.conditions or []
            if name not in ready and any(
                c.type == "Ready" and c.status == "True" for c in conditions
            ):
                ready[name] = time.monotonic() - created[name]
        return len(ready)

    wait_for(note_ready, timeout, f"{count} pods Ready", poll=0.1, until=lambda n: n >= count)
    return sorted(ready.values())


def node_rss(cluster: local_cluster.LocalCluster) -> dict[str, int]:
    paths = cluster.node_paths
    pids = paths.home / "pids"
    found = {
        name: rss_bytes(pid)
        for name in ("kubelet", "containerd")
        if (pid := processes.recorded_pid(pids, name))
    }
    shims = node.processes_mentioning(str(paths.containerd_socket))
    found["containerd shims"] = sum(
        rss_bytes(pid) for pid in shims if pid != processes.recorded_pid(pids, "containerd")
    )
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cluster up/down cycles")
    parser.add_argument("--pods", type=int, default=20, help="pods created at once")
    parser.add_argument("--no-builds", action="store_true", help="skip the image builds' figures")
    parser.add_argument("--rootfs", action="store_true", help="also time debootstrap")
    parser.add_argument("--name", default="bench-node", help="cluster name to use")
    args = parser.parse_args()
    if local_cluster.LocalCluster(args.name).is_running():
        raise SystemExit(f"a cluster named {args.name!r} is already running; choose --name")

    if not args.no_builds:
        report_image_builds([], args.rootfs)

    ups: list[tuple[float, float]] = []
    pod_times: list[float] = []
    idle_times: list[float] = []
    rss: dict[str, int] = {}
    try:
        for run in range(args.runs):
            ups.append(time_up(args.name))
            print(
                f"cluster up --real-node #{run + 1}: node Ready {ups[-1][0]:.2f} s, add-ons {ups[-1][1]:.2f} s",
                flush=True,
            )
            if run < args.runs - 1:
                local_cluster.down(args.name)
        cluster = local_cluster.LocalCluster(args.name)
        local_cluster.load_images(cluster, ["sample-app"])
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        idle_times = pods_ready(api, args.pods, minimal_container(images.reference("pause")))
        pod_times = pods_ready(api, args.pods, app_container(images.reference("sample-app")))
        rss = node_rss(cluster)
    finally:
        local_cluster.down(args.name)

    ready_median = statistics.median(u[0] for u in ups)
    addons_median = statistics.median(u[1] for u in ups)
    p50, p95 = percentile(pod_times, 0.5), percentile(pod_times, 0.95)
    idle50, idle95 = percentile(idle_times, 0.5), percentile(idle_times, 0.95)
    print()
    print(f"real node RSS with {args.pods} pods running:")
    for component, size in rss.items():
        print(f"  {component:<28} {size / MiB:8.1f} MiB")
    print()
    print(f"  {'measure':<44} {'figure':>12}   {'target':<10} verdict")
    print(
        row(
            f"up --real-node to node Ready (median of {len(ups)})",
            f"{ready_median:.2f} s",
            "< 30 s",
            ready_median < 30,
        )
    )
    print(f"  {'up --real-node to CoreDNS, metrics-server':<44} {addons_median:>10.2f} s")
    print(
        row(f"{args.pods} idle pods create -> Ready, p50", f"{idle50:.2f} s", "< 3 s", idle50 < 3)
    )
    print(f"  {f'{args.pods} idle pods create -> Ready, p95':<44} {idle95:>10.2f} s")
    print(
        row(f"{args.pods} sample-app pods create -> Ready, p50", f"{p50:.2f} s", "< 3 s", p50 < 3)
    )
    print(f"  {f'{args.pods} sample-app pods create -> Ready, p95':<44} {p95:>10.2f} s")
    print(f"  {'kubelet + containerd (+ shims) RSS':<44} {sum(rss.values()) / MiB:>8.1f} MiB")


if __name__ == "__main__":
    main()
