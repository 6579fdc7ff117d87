# mypy: disable-error-code="union-attr"
"""A volume provisioner for the local cluster, the stand-in for kind's local-path provisioner.

This loop creates a hostPath PersistentVolume pre-bound to each Pending claim of the
default StorageClass `standard`, in a directory of its own under VOLUMES_DIR (the
cluster's directory, so `down` removes the data). On kwok nodes no volume is ever
mounted and what matters is that the claim binds, so that the scheduler places its
pods; on the real node the kubelet mounts the directory, which is created writable by
any user as kind's local-path provisioner does, since pods run as non-root users.

Run as `python -m phaseshift.lab.provisioner KUBECONFIG VOLUMES_DIR`; `phaseshift cluster
up` starts it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

STORAGE_CLASS = "standard"
PROVISIONER = "phaseshift.dev/local-path"


def default_storage_class() -> client.V1StorageClass:
    return client.V1StorageClass(
        metadata=client.V1ObjectMeta(
            name=STORAGE_CLASS,
            annotations={"storageclass.kubernetes.io/is-default-class": "true"},
        ),
        provisioner=PROVISIONER,
        reclaim_policy="Delete",
        volume_binding_mode="Immediate",
    )


def volume_for(claim: client.V1PersistentVolumeClaim, volumes: Path) -> client.V1PersistentVolume:
    meta = claim.metadata
    size = (claim.spec.resources.requests or {}).get("storage", "1Gi")
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(
            name=f"pv-{meta.uid}",
            annotations={"pv.kubernetes.io/provisioned-by": PROVISIONER},
        ),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": size},
            access_modes=claim.spec.access_modes or ["ReadWriteOnce"],
            persistent_volume_reclaim_policy="Retain",
            storage_class_name=claim.spec.storage_class_name or STORAGE_CLASS,
            host_path=client.V1HostPathVolumeSource(
                path=str(volumes / str(meta.uid)), type="Directory"
            ),
            claim_ref=client.V1ObjectReference(
                kind="PersistentVolumeClaim",
                namespace=meta.namespace,
                name=meta.name,
                uid=meta.uid,
            ),
        ),
    )


def provision_pending(core: client.CoreV1Api, volumes: Path) -> int:
    created = 0
    for claim in core.list_persistent_volume_claim_for_all_namespaces().items:
        if claim.status.phase != "Pending" or claim.spec.volume_name:
            continue
        if (claim.spec.storage_class_name or STORAGE_CLASS) != STORAGE_CLASS:
            continue
        directory = volumes / str(claim.metadata.uid)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o777)
        try:
            core.create_persistent_volume(volume_for(claim, volumes))
            created += 1
        except ApiException as e:
            if e.status != 409:  # already provisioned on an earlier pass
                raise
    return created


def run(kubeconfig: str, volumes: Path, interval: float = 0.5) -> None:
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        client.StorageV1Api(api).create_storage_class(default_storage_class())
    except ApiException as e:
        if e.status != 409:
            raise
    core = client.CoreV1Api(api)
    while True:
        try:
            provision_pending(core, volumes)
        except ApiException as e:
            print(f"provisioner: {e.status} {e.reason}", file=sys.stderr)
        except Exception as e:  # the API server restarting must not end the loop
            print(f"provisioner: {e}", file=sys.stderr)
        time.sleep(interval)


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
