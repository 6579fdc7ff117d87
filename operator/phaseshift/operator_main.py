"""`phaseshift run`: the operator process — kopf, leader Lease, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
from collections.abc import Mapping
from functools import partial

import kopf
from kubernetes import config
from kubernetes.client import ApiClient
from prometheus_client import start_http_server

from phaseshift import handlers, signals
from phaseshift.batching import SignalBatcher
from phaseshift.kube import Kube
from phaseshift.leader import LeaseElector
from phaseshift.metrics import OperatorMetrics
from phaseshift.reconcile import Reconciler


def api_client() -> ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
        return ApiClient()
    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def run_command(
    *,
    namespaces: list[str],
    health_port: int,
    metrics_port: int,
    lease_name: str,
    lease_namespace: str | None,
    images: Mapping[str, str] | None = None,
) -> int:
    """Runs until stopped. `images` is the image table every plan renders with (see
    phaseshift.imagemap; the caller resolves it from flags and environment)."""
    # `kill -USR1 <pid>` prints every thread's stack: the first thing to look at when stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    assert handlers.evaluate  # registers the kopf handlers
    api = api_client()
    metrics = OperatorMetrics()
    kube = Kube(api, metrics)
    leader = LeaseElector(
        api, lease_namespace or os.environ.get("POD_NAMESPACE", "default"), lease_name
    )
    leader.start()
    start_http_server(metrics_port, addr="0.0.0.0", registry=metrics.registry)
    memo = kopf.Memo(
        reconciler=Reconciler(kube, metrics, images=images),
        # The operator's memory of templates found to drop the plans' labels, for its life.
        batcher=SignalBatcher(partial(signals.fetch_signals, ungrouped=set())),
        leader=leader,
        metrics=metrics,
    )
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not namespaces,
                namespaces=namespaces,
                standalone=True,  # replicas coordinate through the Lease, not kopf peering
                liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
                memo=memo,
            )
        )
    finally:
        leader.stop()
    return 0
