"""manifests/prometheus: which rendered pods its scrape jobs turn into targets, and with
which labels, by Prometheus' relabelling rules applied to what kubernetes_sd's pod role
discovers (one target per container port)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from phaseshift.api import App, parse_plan
from phaseshift.render import RenderContext, render_phase

CONFIG = Path(__file__).resolve().parents[2] / "manifests" / "prometheus" / "config.yaml"
NAMESPACE = "shop"


def scrape_configs() -> list[dict[str, Any]]:
    configmap = yaml.safe_load(CONFIG.read_text())
    return list(yaml.safe_load(configmap["data"]["prometheus.yml"])["scrape_configs"])


def _name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def discovered(pod: str, template: dict[str, Any], ip: str) -> Iterator[dict[str, str]]:
    """The labels kubernetes_sd gives each container port of a pod."""
    meta = template["metadata"]
    common = {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": pod,
    }
    for key, value in meta.get("labels", {}).items():
        common[f"__meta_kubernetes_pod_label_{_name(key)}"] = value
        common[f"__meta_kubernetes_pod_labelpresent_{_name(key)}"] = "true"
    for key, value in meta.get("annotations", {}).items():
        common[f"__meta_kubernetes_pod_annotation_{_name(key)}"] = value
        common[f"__meta_kubernetes_pod_annotationpresent_{_name(key)}"] = "true"
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            yield {
                **common,
                "__address__": f"{ip}:{port['containerPort']}",
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
            }


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' relabel_config for the actions the manifests use; None when dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        source = rule.get("separator", ";").join(
            labels.get(name, "") for name in rule.get("source_labels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), source)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = re.sub(r"\$(\d+)", r"\\g<\1>", rule.get("replacement", "$1"))
            value = match.expand(replacement)
            if value:
                labels[rule["target_label"]] = value
            else:
                labels.pop(rule["target_label"], None)
    return labels


def targets(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """(job, labels) of every target, deduplicated within a job as Prometheus does."""
    pods = []
    for index, obj in enumerate(o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        replicas = obj["spec"].get("replicas", 1)
        for ordinal in range(replicas):
            name = f"{obj['metadata']['name']}-{ordinal}"
            pods.append((name, obj["spec"]["template"], f"10.0.{index}.{ordinal + 1}"))
    found = []
    for job in scrape_configs():
        seen = set()
        for pod, template, ip in pods:
            for labels in discovered(pod, template, ip):
                result = relabel(labels, job.get("relabel_configs", []))
                if result is None:
                    continue
                public = {k: v for k, v in result.items() if not k.startswith("__meta_")}
                key = tuple(sorted(public.items()))
                if key not in seen:
                    seen.add(key)
                    found.append((job["job_name"], public))
    return found


def _phase4_with_canaries() -> list[dict[str, Any]]:
    plan = parse_plan({"metadata": {"name": "shop", "namespace": NAMESPACE}, "spec": {}})
    ctx = RenderContext(db_password="pw", next_app=App(image="app:2"), canary_weight=50)
    return render_phase(plan, 4, ctx)


def test_every_app_pod_is_scraped_once_with_its_track() -> None:
    found = targets(_phase4_with_canaries())
    by_pod: dict[str, list[dict[str, str]]] = {}
    for _, labels in found:
        by_pod.setdefault(labels["pod"], []).append(labels)
    for role in ("user-service", "data-service", "gateway"):
        for track, pod in (("stable", f"shop-{role}-0"), ("canary", f"shop-{role}-canary-0")):
            assert len(by_pod[pod]) == 1, (pod, by_pod[pod])
            (labels,) = by_pod[pod]
            assert labels["track"] == track
            assert labels["namespace"] == NAMESPACE
            assert labels["plan"] == "shop"
            assert labels["__address__"].endswith(":8080")
            assert labels["__metrics_path__"] == "/metrics"


def test_exporters_and_queues_are_scraped_once_on_their_metrics_port() -> None:
    found = targets(_phase4_with_canaries())
    addresses = [labels["__address__"] for _, labels in found]
    assert len(addresses) == len(set(addresses)), "a target scraped twice"
    ports = {labels["pod"]: labels["__address__"].rsplit(":", 1)[1] for _, labels in found}
    assert ports["shop-postgres-0"] == "9187"
    assert ports["shop-redis-cluster-0"] == "9121"
    assert ports["shop-rabbitmq-0"] == "15692"
    assert "track" not in dict(next(lbl for _, lbl in found if lbl["pod"] == "shop-postgres-0"))
    # Kafka and Cassandra through their JMX exporter; nginx has no Prometheus endpoint.
    assert ports["shop-kafka-0"] == ports["shop-cassandra-0"] == "9404"
    assert not [p for p in ports if p.startswith("shop-edge")]


def test_blue_green_colours_are_both_scraped_in_phase_2() -> None:
    plan = parse_plan({"metadata": {"name": "shop", "namespace": NAMESPACE}, "spec": {}})
    ctx = RenderContext(db_password="pw", next_app=App(image="app:2"))
    pods = [labels["pod"] for _, labels in targets(render_phase(plan, 2, ctx))]
    assert pods.count("shop-app-blue-0") == pods.count("shop-app-green-0") == 1
