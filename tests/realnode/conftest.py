"""Fixtures for tests on the real node: one cluster with a real kubelet, started by the
first test that asks for it and stopped at the end of the session.

`phaseshift cluster up --real-node` starts it (or PHASESHIFT_TEST_REAL_NODE names a
running one); the images the tests run are built here and loaded into its containerd.
The `cluster`, `kube` and `kubectl` fixtures of tests/conftest.py are replaced in this
folder (fixtures of their own: the session's kwok cluster may be cached under the same
names), so `kube`, `kubectl` and `namespace` talk to the real node's cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab import images
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.realshop import running_operator
from phaseshift.lab.wait import wait_for

TEST_IMAGES = ("sample-app",)


@pytest.fixture(scope="session")
def cluster() -> Iterator[local_cluster.LocalCluster]:
    reuse = os.environ.get("PHASESHIFT_TEST_REAL_NODE")
    if reuse:
        existing = local_cluster.LocalCluster(reuse)
        if not (existing.is_running() and existing.has_real_node()):
            pytest.fail(
                f"PHASESHIFT_TEST_REAL_NODE={reuse} names no running cluster with a real node"
            )
        local_cluster.load_images(existing, TEST_IMAGES)
        yield existing
        return
    name = f"rn-{os.getpid()}"
    try:
        started = local_cluster.up(name, nodes=0, real_node=True, timeout=180.0)
    except local_cluster.ClusterError as e:
        pytest.fail(f"the real node could not start: {e}")
    try:
        local_cluster.load_images(started, TEST_IMAGES)
        yield started
    finally:
        local_cluster.down(name)


@pytest.fixture(scope="session")
def kube(cluster: local_cluster.LocalCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def kubectl(cluster: local_cluster.LocalCluster) -> local_cluster.Kubectl:
    return local_cluster.kubectl_runner(cluster.kubeconfig)


@pytest.fixture(scope="session")
def sample_app_image() -> str:
    return images.reference("sample-app")


@pytest.fixture
def operator(
    cluster: local_cluster.LocalCluster, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(cluster, namespace, tmp_path) as process:
        yield process


@pytest.fixture(scope="module")
def module_namespace(kube: client.ApiClient) -> Iterator[str]:
    """A namespace for the tests of one module that share one plan."""
    core = client.CoreV1Api(kube)
    name = f"m-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: core.list_namespaced_service_account(name).items,
        timeout=30,
        poll=0.1,
        what=f"namespace {name}'s default ServiceAccount",
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def module_operator(
    cluster: local_cluster.LocalCluster,
    module_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    with running_operator(
        cluster, module_namespace, tmp_path_factory.mktemp("operator")
    ) as process:
        yield process
