"""The operator-wide image table: parsing the map, moving images to a registry, and which
setting wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from phaseshift import cli
from phaseshift.catalog import IMAGES
from phaseshift.imagemap import (
    ENV_MAP,
    ENV_REGISTRY,
    ImageMapError,
    format_image_map,
    images_from,
    in_registry,
    parse_image_map,
    resolve_images,
)


def test_a_map_is_comma_separated_component_image_pairs() -> None:
    text = " postgres=localhost/phaseshift/postgres:15 ,redis=localhost/phaseshift/redis:7.0\n"
    assert parse_image_map(text) == {
        "postgres": "localhost/phaseshift/postgres:15",
        "redis": "localhost/phaseshift/redis:7.0",
    }
    assert parse_image_map("") == parse_image_map(" \n") == {}
    digest = "registry.local/pg@sha256:" + "0" * 64
    assert parse_image_map(f"postgres={digest}") == {"postgres": digest}


def test_format_reads_back() -> None:
    images = {"app": "localhost/phaseshift/sample-app:0.1.0", "nginx": "localhost/n:1.22"}
    assert parse_image_map(format_image_map(images)) == images


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("postgres", "not component=image"),
        ("postgres=", "not component=image"),
        ("=postgres:15", "not component=image"),
        ("postgress=postgres:15", "unknown component 'postgress'"),
        ("postgres=a=b", "not an image reference"),
        ("postgres=a:1,postgres=b:1", "mapped twice"),
    ],
)
def test_a_map_that_cannot_be_meant_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(ImageMapError, match=complaint):
        parse_image_map(text)


@pytest.mark.parametrize(
    ("image", "moved"),
    [
        ("postgres:15.10", "registry.local/mirror/postgres:15.10"),
        ("apache/kafka:4.1.1", "registry.local/mirror/apache/kafka:4.1.1"),
        (
            "quay.io/prometheuscommunity/postgres-exporter:v0.11.1",
            "registry.local/mirror/prometheuscommunity/postgres-exporter:v0.11.1",
        ),
        ("localhost/phaseshift/redis:7.0", "registry.local/mirror/phaseshift/redis:7.0"),
        ("registry:5000/x:1", "registry.local/mirror/x:1"),
    ],
)
def test_a_registry_replaces_the_host_and_keeps_the_path(image: str, moved: str) -> None:
    assert in_registry(image, "registry.local/mirror/") == moved


def test_the_table_moves_every_default_then_applies_the_map() -> None:
    table = resolve_images(registry="registry.local", overrides={"redis": "valkey:7.2"})
    assert table.keys() == IMAGES.keys()
    assert table["postgres"] == "registry.local/postgres:15.10"
    assert table["app"] == "registry.local/phaseshift/sample-app:0.1.0"
    assert table["redis"] == "valkey:7.2"  # an entry is used as written
    assert resolve_images() == IMAGES
    with pytest.raises(ImageMapError, match="registry"):
        resolve_images(registry="not a registry")


def test_flags_win_over_the_environment() -> None:
    environ = {ENV_MAP: "redis=env/redis:7,nginx=env/nginx:1", ENV_REGISTRY: "env.local"}
    table = images_from(environ, image_map="redis=flag/redis:7", registry="flag.local")
    assert table["redis"] == "flag/redis:7"
    assert table["nginx"] == "env/nginx:1"
    assert table["postgres"] == "flag.local/postgres:15.10"
    assert images_from({})["postgres"] == IMAGES["postgres"]
    assert images_from({ENV_REGISTRY: "env.local"}, registry="")["postgres"] == "postgres:15.10"


def test_plan_refuses_a_bad_map_before_rendering(capsys, monkeypatch) -> None:
    monkeypatch.setenv(ENV_MAP, "postgress=x:1")
    shop = Path(__file__).resolve().parents[2] / "examples" / "shop.yaml"
    assert cli.main(["plan", "-f", str(shop), "--phase", "2"]) == 2
    assert "unknown component 'postgress'" in capsys.readouterr().err


def test_the_operator_hands_its_table_to_every_render() -> None:
    from phaseshift import rollout
    from phaseshift.api import parse_plan

    plan = parse_plan({"metadata": {"name": "shop", "namespace": "a", "uid": "u"}})
    table = resolve_images(overrides={"postgres": "local/pg:15"})
    _, ctx = rollout.render_inputs(plan, plan.status, "pw", images=table)
    assert ctx.images == table
    _, default = rollout.render_inputs(plan, plan.status, "pw")
    assert default.images == IMAGES
