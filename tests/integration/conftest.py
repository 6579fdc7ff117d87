"""Fixtures for operator tests: a synthetic exporter, the operator process, a plan's world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from phaseshift.api import GROUP, PLURAL, VERSION
from phaseshift.lab.cluster import LocalCluster
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.plans import World
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.wait import wait_for


@pytest.fixture
def exporter(prometheus: PrometheusServer) -> Iterator[SyntheticExporter]:
    with SyntheticExporter() as exporter:
        prometheus.add_target(f"exporter-{id(exporter)}", exporter.address)
        yield exporter


@pytest.fixture
def operator(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster.kubeconfig, namespace, tmp_path)
    process.start()
    yield process
    # Plans carry the operator's finalizer: delete them while the operator still runs.
    custom = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        ),
        what="plans to be deleted",
    )
    process.stop()


@pytest.fixture
def world(
    kube: client.ApiClient, namespace: str, scaleplan_crd: None, exporter: SyntheticExporter
) -> World:
    return World(kube, namespace, exporter)
