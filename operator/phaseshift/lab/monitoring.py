"""The Prometheus that `manifests/prometheus` installs, on a local cluster's real node.

It is applied as a user applies it, from the same kustomization, with one change: the
image built here (`localhost/phaseshift/prometheus`, which keeps the official image's
entrypoint and paths) in place of `prom/prometheus`, since no registry is reachable.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from phaseshift.lab.binaries import REPO_ROOT
from phaseshift.lab.cluster import ClusterError, LocalCluster, kubectl_runner, load_images

KUSTOMIZATION = REPO_ROOT / "manifests" / "prometheus"
NAMESPACE = "monitoring"
NAME = "prometheus"


def with_image(objects: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    """The objects with the Prometheus Deployment's container running `image`."""
    for obj in objects:
        if obj.get("kind") == "Deployment" and obj["metadata"]["name"] == NAME:
            for container in obj["spec"]["template"]["spec"]["containers"]:
                if container["name"] == NAME:
                    container["image"] = image
    return objects


def install_prometheus(cluster: LocalCluster, timeout: float = 300.0) -> str:
    """Applies manifests/prometheus and waits for it; returns its Service's URL, which
    the node's host reaches through kube-proxy (so an operator process there can use it
    as a plan's prometheusUrl)."""
    from phaseshift.lab import images

    load_images(cluster, ["prometheus"])
    kubectl = kubectl_runner(cluster.kubeconfig)
    try:
        built = kubectl("kustomize", str(KUSTOMIZATION)).stdout
        objects = with_image(
            [o for o in yaml.safe_load_all(built) if o], images.reference("prometheus")
        )
        kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(objects))
        kubectl(
            "-n", NAMESPACE, "rollout", "status", f"deployment/{NAME}", f"--timeout={int(timeout)}s"
        )
        service = json.loads(kubectl("-n", NAMESPACE, "get", "service", NAME, "-o", "json").stdout)
    except (subprocess.SubprocessError, RuntimeError) as e:
        raise ClusterError(f"could not install manifests/prometheus: {e}") from e
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['spec']['clusterIP']}:{port}"
