"""manifests/prometheus with the image built here: only Prometheus' own container changes,
and the manifests name the release that is built and tested here."""

from __future__ import annotations

import subprocess

import yaml

from phaseshift.lab.binaries import pinned_versions
from phaseshift.lab.monitoring import KUSTOMIZATION, NAME, with_image


def test_only_the_prometheus_container_takes_the_local_image() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, check=True
    ).stdout
    objects = [o for o in yaml.safe_load_all(built) if o]
    official = f"prom/prometheus:{pinned_versions()['PROMETHEUS_VERSION']}"
    assert official in built
    before = yaml.safe_dump_all(objects)
    changed = with_image(objects, "localhost/phaseshift/prometheus:v3.16.0")
    images = [
        c["image"]
        for o in changed
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert images == ["localhost/phaseshift/prometheus:v3.16.0"]
    assert next(o for o in changed if o["kind"] == "Deployment")["metadata"]["name"] == NAME
    # Nothing else differs.
    assert (
        yaml.safe_dump_all(changed).replace(
            "localhost/phaseshift/prometheus:v3.16.0", "prom/prometheus:v3.16.0"
        )
        == before
    )
