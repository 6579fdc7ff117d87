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
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab import images

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
