"""The catalog's README table, pinned images, quantities and resource totals."""

from __future__ import annotations

import itertools

import pytest

from phaseshift.catalog import IMAGES, PHASES, catalog_markdown_table
from phaseshift.render import object_key, resource_totals
from phaseshift.render.quantity import cpu_millicores, memory_bytes


def test_table_has_a_column_per_phase_and_a_row_per_aspect() -> None:
    lines = catalog_markdown_table().splitlines()
    assert len(lines[0].split("|")) - 2 == len(PHASES) + 1
    assert {line.split("|")[1].strip() for line in lines[2:]} == {
        "Users", "Application", "Database", "Caching", "Edge", "Messaging", "Deploy strategy",
    }  # fmt: skip
    assert "SQLite" in lines[4] and "Cassandra" in lines[4]


def test_every_default_image_is_pinned() -> None:
    for component, image in IMAGES.items():
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", component


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("250m", 250), ("2", 2000), ("1.5", 1500), ("0.1", 100), ("1e3", 1_000_000)],
)
def test_cpu_quantities(text: str, millicores: int) -> None:
    assert cpu_millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30), ("1G", 10**9), ("100", 100), ("1k", 1000)],
)
def test_memory_quantities(text: str, size: int) -> None:
    assert memory_bytes(text) == size


def test_not_a_quantity_is_rejected() -> None:
    with pytest.raises(ValueError, match="quantity"):
        cpu_millicores("lots")


def _deployment(name: str, replicas: int | None, cpu: str, memory: str) -> dict:
    spec: dict = {
        "template": {
            "spec": {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
        }
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def test_totals_count_replicas_and_hpa_minimums() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "b"},
        "spec": {"scaleTargetRef": {"name": "b"}, "minReplicas": 4},
    }
    objects = [_deployment("a", 2, "500m", "1Gi"), _deployment("b", None, "250m", "256Mi"), hpa]
    assert resource_totals(objects) == (2 * 500 + 4 * 250, 2 * 2**30 + 4 * 256 * 2**20)
    assert resource_totals([_deployment("idle", 0, "1", "1Gi")]) == (0, 0)


def test_totals_grow_from_phase_to_phase(render) -> None:
    totals = [resource_totals(render(phase)) for phase in (1, 2, 3, 4)]
    for smaller, larger in itertools.pairwise(totals):
        assert larger[0] > smaller[0] and larger[1] > smaller[1]


def test_object_key() -> None:
    obj = _deployment("a", 1, "1", "1Gi")
    assert object_key(obj) == ("apps/v1", "Deployment", "a")
