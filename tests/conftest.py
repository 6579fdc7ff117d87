"""Fixtures for tests against real servers: a local control plane and a real Prometheus.

The cluster is started once per test run (or reused when PHASESHIFT_TEST_CLUSTER names a
running one), every test gets a fresh namespace, and everything started here is stopped
by PID at the end.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from phaseshift.lab import binaries
from phaseshift.lab import cluster as local_cluster
from phaseshift.lab.prometheus import PrometheusServer

REPO_ROOT = Path(__file__).resolve().parents[1]
Kubectl = local_cluster.Kubectl


@pytest.fixture(scope="session")
def cluster() -> Iterator[local_cluster.LocalCluster]:
    reuse = os.environ.get("PHASESHIFT_TEST_CLUSTER")
    if reuse:
        existing = local_cluster.LocalCluster(reuse)
        if not existing.is_running():
            pytest.fail(f"PHASESHIFT_TEST_CLUSTER={reuse} names no running cluster")
        yield existing
        return
    try:
        binaries.ensure_built()
    except binaries.BinariesMissing as e:
        pytest.fail(f"the local control plane could not be built (tools/build.sh): {e}")
    name = f"test-{os.getpid()}"
    started = local_cluster.up(name, nodes=3)
    try:
        yield started
    finally:
        local_cluster.down(name)


@pytest.fixture(scope="session")
def kube(cluster: local_cluster.LocalCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def kubectl(cluster: local_cluster.LocalCluster) -> Kubectl:
    return local_cluster.kubectl_runner(cluster.kubeconfig)


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the namespace's default ServiceAccount exists.
    for _ in range(100):
        if core.list_namespaced_service_account(name).items:
            break
        time.sleep(0.1)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def scaleplan_crd(cluster: local_cluster.LocalCluster) -> None:
    local_cluster.install_crd(cluster.kubeconfig)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
