"""What the benches share: their own cluster with Prometheus and a synthetic exporter,
namespaces, the operator as a process, /metrics samples.

The synthetic exporter, the operator process and `wait_for` live in phaseshift.lab, as
the integration tests use them; this module adds only what tests do not need.
"""

from __future__ import annotations

import signal
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.wait import wait_for


@dataclass(frozen=True)
class BenchWorld:
    api: client.ApiClient
    kubeconfig: Path
    exporter: SyntheticExporter
    prometheus: PrometheusServer
    log_dir: Path


def _terminated(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through bench_world's cleanup


@contextmanager
def bench_world(name: str) -> Iterator[BenchWorld]:
    """A cluster of the bench's own (`name`) with the CRD, and a Prometheus in a temp dir
    scraping a synthetic exporter; all stopped by PID on the way out, also on SIGTERM."""
    if local_cluster.LocalCluster(name).is_running():
        raise SystemExit(f"a cluster named {name!r} is already running; choose --name")
    signal.signal(signal.SIGTERM, _terminated)
    with tempfile.TemporaryDirectory(prefix="phaseshift-bench-") as tmp:
        log_dir = Path(tmp)
        prometheus = PrometheusServer(log_dir / "prometheus")
        try:
            cluster = local_cluster.up(name, nodes=3)
            prometheus.start()
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            local_cluster.install_crd(cluster.kubeconfig)
            with SyntheticExporter() as exporter:
                prometheus.add_target("bench-exporter", exporter.address)
                yield BenchWorld(api, cluster.kubeconfig, exporter, prometheus, log_dir)
        finally:
            prometheus.stop()
            local_cluster.down(name)


def metric_samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """All samples of one metric from a /metrics endpoint, keyed by their sorted labels."""
    text = httpx.get(url, timeout=10).text
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def make_namespace(api: client.ApiClient, prefix: str = "bench") -> str:
    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The operator's pods are refused until the default ServiceAccount exists.
    wait_for(lambda: core.list_namespaced_service_account(name).items, 30, "a ServiceAccount")
    return name


@contextmanager
def operator_in(kubeconfig: Path, namespace: str, log_dir: Path) -> Iterator[OperatorProcess]:
    """`phaseshift run` watching `namespace`, stopped by PID on the way out."""
    process = OperatorProcess(kubeconfig, namespace, log_dir)
    try:
        process.start()
        yield process
    finally:
        process.stop()
