"""Images: the operator's image table replaces the defaults, the plan's own choices win."""

from __future__ import annotations

from pathlib import Path

import yaml
from render_helpers import pod_templates

from phaseshift.api import DEFAULT_IMAGE
from phaseshift.catalog import IMAGES
from phaseshift.cli import main
from phaseshift.imagemap import resolve_images

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop.yaml"
# The shape of the lab's table: every component at a local image.
LOCAL = {key: f"localhost/phaseshift/{key}:test" for key in IMAGES}


def _images(objects: list[dict]) -> dict[str, set[str]]:
    """Workload name -> the images of its containers (init containers included)."""
    result = {}
    for name, template in pod_templates(objects):
        spec = template["spec"]
        result[name] = {c["image"] for c in [*spec.get("initContainers", []), *spec["containers"]]}
    return result


def test_the_table_replaces_every_default_image_in_every_phase(render) -> None:
    for phase in (1, 2, 3, 4):
        used = set().union(*_images(render(phase, images=LOCAL)).values())
        assert used and used <= set(LOCAL.values()), phase
        assert not used & set(IMAGES.values())
    objects = render(4, images=LOCAL)
    images = _images(objects)
    assert images["shop-postgres"] == {LOCAL["postgres"], LOCAL["postgres-exporter"]}
    assert images["shop-redis-cluster"] == {LOCAL["redis"], LOCAL["redis-exporter"]}
    assert images["shop-kafka"] == {LOCAL["kafka"]}
    assert images["shop-cassandra"] == {LOCAL["cassandra"]}
    assert images["shop-rabbitmq"] == {LOCAL["rabbitmq"]}
    assert images["shop-edge"] == {LOCAL["nginx"]}
    assert images["shop-gateway"] == {LOCAL["app"]}


def test_the_plan_wins_over_the_table(render, make_plan) -> None:
    plan = make_plan(
        app={"image": "registry.example/shop:2.0"},
        overrides=[{"phase": 4, "images": {"postgres": "postgres:17.0", "gateway": "gw:1"}}],
    )
    images = _images(render(4, plan, images={**LOCAL, "data-service": "local/data:1"}))
    assert LOCAL["postgres"] not in images["shop-postgres"]
    assert "postgres:17.0" in images["shop-postgres"]
    assert images["shop-gateway"] == {"gw:1"}
    # The plan chose its app image: every service keeps it, whatever the table says.
    assert images["shop-user-service"] == {"registry.example/shop:2.0"}
    assert images["shop-data-service"] == {"registry.example/shop:2.0"}
    assert images["shop-redis-cluster"] == {LOCAL["redis"], LOCAL["redis-exporter"]}


def test_a_service_entry_replaces_only_the_default_app_image(render, make_plan) -> None:
    table = {**LOCAL, "gateway": "local/gateway:1"}
    images = _images(render(4, make_plan(app={"image": DEFAULT_IMAGE}), images=table))
    assert images["shop-gateway"] == {"local/gateway:1"}
    assert images["shop-user-service"] == {LOCAL["app"]}


def test_a_registry_moves_every_default_image(render) -> None:
    table = resolve_images(registry="registry.local/mirror")
    used = set().union(*_images(render(4, images=table)).values())
    assert all(image.startswith("registry.local/mirror/") for image in used), used
    assert "registry.local/mirror/postgres:15.10" in used


def test_plan_command_renders_with_the_map(capsys) -> None:
    assert main(["plan", "-f", str(SHOP), "--phase", "2", "--image-map", "postgres=pg:local"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    primary = next(o for o in objects if o["metadata"]["name"] == "shop-postgres")
    assert {c["image"] for c in primary["spec"]["template"]["spec"]["containers"]} == {
        "pg:local",
        IMAGES["postgres-exporter"],
    }
