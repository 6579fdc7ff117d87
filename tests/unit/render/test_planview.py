"""`phaseshift plan`: the YAML stream of a phase and the diff between two phases."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from phaseshift.cli import main
from phaseshift.planview import PLACEHOLDER_UID, plan_command

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop.yaml"


def test_plan_prints_the_phase_as_a_yaml_stream() -> None:
    out = io.StringIO()
    assert plan_command(SHOP, 3, None, out=out) == 0
    objects = list(yaml.safe_load_all(out.getvalue()))
    assert {o["kind"] for o in objects} >= {"Deployment", "StatefulSet", "HorizontalPodAutoscaler"}
    owned = [o for o in objects if "ownerReferences" in o["metadata"]]
    assert owned and all(
        o["metadata"]["ownerReferences"][0]["uid"] == PLACEHOLDER_UID for o in owned
    )


def test_diff_lists_added_changed_removed_and_totals() -> None:
    out = io.StringIO()
    assert plan_command(SHOP, 2, 1, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "+ StatefulSet shop-postgres (apps/v1)" in lines
    assert "+ Deployment shop-app-blue (apps/v1)" in lines
    assert "~ Secret shop-app-secret (v1)" in lines
    assert any(line.startswith("- Deployment shop-app ") for line in lines)
    # The SQLite claim leaves the phase but its data is kept.
    assert any(
        line.startswith("- PersistentVolumeClaim shop-sqlite") and "retained" in line
        for line in lines
    )
    assert lines[-2].startswith("phase 1: requests cpu ")
    assert lines[-1].startswith("phase 2: requests cpu ")


def test_diff_of_a_phase_with_itself_lists_no_object() -> None:
    out = io.StringIO()
    assert plan_command(SHOP, 3, 3, out=out) == 0
    assert [line[:1] for line in out.getvalue().splitlines()] == ["p", "p"]


def test_an_invalid_plan_file_is_reported_not_raised(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: phaseshift.dev/v1alpha1\nkind: ScalePlan\nmetadata: {name: x}\nspec: {app: {port: 0}}\n"
    )
    assert plan_command(bad, 1, None) == 2
    assert "port" in capsys.readouterr().err
    assert plan_command(tmp_path / "missing.yaml", 1, None) == 2


def test_the_cli_dispatches_to_the_plan_view(capsys) -> None:
    assert main(["plan", "-f", str(SHOP), "--phase", "1"]) == 0
    assert "kind: Deployment" in capsys.readouterr().out
