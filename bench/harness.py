"""What the benches share: namespaces, the operator as a process, /metrics samples.

The synthetic exporter, the operator process and `wait_for` live with the integration
tests; the benches use those, and this module adds only what tests do not need.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.integration.operator_process import OperatorProcess  # noqa: E402
from tests.integration.plans import wait_for  # noqa: E402


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
