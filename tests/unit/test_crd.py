"""The generated CRD: committed output in sync, structural, bounded for CEL, defaults kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from phaseshift import api, cli
from phaseshift.crd import crd, crd_yaml, structural_schema

COMMITTED = Path(__file__).resolve().parents[2] / "crds" / "scaleplan.yaml"


def version() -> dict[str, Any]:
    (only,) = crd()["spec"]["versions"]
    return dict(only)


def root_schema() -> dict[str, Any]:
    return dict(version()["schema"]["openAPIV3Schema"])


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its field path."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")


def test_committed_crd_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == crd_yaml(), "run: phaseshift crd > crds/scaleplan.yaml"


def test_cli_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_names_scope_and_subresources() -> None:
    body = yaml.safe_load(crd_yaml())
    assert body["metadata"]["name"] == "scaleplans.phaseshift.dev"
    spec = body["spec"]
    assert spec["group"] == "phaseshift.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ScalePlan"
    assert spec["names"]["plural"] == "scaleplans"
    assert spec["names"]["shortNames"] == ["sp"]
    (v,) = spec["versions"]
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}
    columns = [c["name"] for c in v["additionalPrinterColumns"]]
    assert columns == ["Phase", "Target", "Ready", "Users", "Age", "Image", "Rollout", "Step"]
    wide = [c["name"] for c in v["additionalPrinterColumns"] if c.get("priority") == 1]
    assert wide == ["Image", "Rollout", "Step"]


def test_the_schema_is_structural() -> None:
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "nullable"}
    for path, node in nodes(root_schema()):
        assert not forbidden & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}
        if "exclusiveMinimum" in node or "exclusiveMaximum" in node:
            assert node.get("exclusiveMinimum", True) is True, path
            assert node.get("exclusiveMaximum", True) is True, path


def test_lists_maps_and_strings_in_the_spec_are_bounded() -> None:
    # CEL cost estimates multiply these bounds; an unbounded one makes the CRD unusable.
    for path, node in nodes(root_schema()["properties"]["spec"], ".spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if "additionalProperties" in node:
            assert "maxProperties" in node, path
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, path


def test_nothing_is_free_form() -> None:
    free = [p for p, n in nodes(root_schema()) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert free == []


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server does with a structural schema's defaults, for plain objects."""
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = prop["default"]
            if name in value:
                value[name] = apply_defaults(prop, value[name])
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def test_schema_defaults_reproduce_the_model_defaults() -> None:
    defaulted = apply_defaults(root_schema(), {"spec": {}})["spec"]
    assert api.ScalePlanSpec.model_validate(defaulted) == api.ScalePlanSpec()
    assert defaulted == api.ScalePlanSpec().to_json()


def rules(schema: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in schema.get("x-kubernetes-validations", [])]


def test_cross_field_rules_are_in_the_schema() -> None:
    spec = root_schema()["properties"]["spec"]
    props = spec["properties"]
    assert any("in self.metrics.signals" in r for r in rules(spec))
    assert any("a.promoteWhen[k] < b.promoteWhen[k]" in r for r in rules(props["phases"]))
    assert props["phases"]["x-kubernetes-list-map-keys"] == ["phase"]
    policy = rules(props["policy"])
    assert any("self.minPhase <= self.maxPhase" in r for r in policy)
    assert any("size(self.approvers) > 0" in r for r in policy)
    hpa = props["overrides"]["items"]["properties"]["hpa"]
    assert any("self.minReplicas <= self.maxReplicas" in r for r in rules(hpa))
    signals = props["metrics"]["properties"]["signals"]
    assert signals["minProperties"] == 1
    assert any("k.matches(" in r for r in rules(signals))
    hysteresis = props["policy"]["properties"]["demotion"]["properties"]["hysteresis"]
    assert hysteresis["exclusiveMinimum"] and hysteresis["exclusiveMaximum"]
    assert (hysteresis["minimum"], hysteresis["maximum"]) == (0, 1)


def test_optional_fields_are_omitted_not_nullable() -> None:
    resources = structural_schema(api.App)["properties"]["resources"]
    assert resources["type"] == "object"
    assert "default" not in resources


def test_status_conditions_are_a_map_keyed_by_type() -> None:
    conditions = root_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "reason", "lastTransitionTime"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
