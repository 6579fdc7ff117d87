"""`phaseshift plan`: the objects a ScalePlan file renders to, or what a phase change does.

The file is rendered as the operator would render it, without a cluster: the plan has no
uid yet and no generated password, so placeholders stand in for both.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from phaseshift.api import KIND, InvalidSpec, ScalePlan, parse_plan
from phaseshift.render import RenderContext, object_key, render_phase, resource_totals
from phaseshift.render.diff import diff_objects
from phaseshift.render.scope import ANNOTATION_STATEFUL

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_PASSWORD = "generated-by-the-operator"


def load_plan(path: Path) -> ScalePlan:
    """The first ScalePlan in a YAML file, with the placeholder uid."""
    with path.open() as stream:
        for document in yaml.safe_load_all(stream):
            if isinstance(document, dict) and document.get("kind") == KIND:
                plan = parse_plan(document)
                return plan.model_copy(
                    update={"metadata": plan.metadata.model_copy(update={"uid": PLACEHOLDER_UID})}
                )
    raise InvalidSpec(f"{path}: no {KIND} in the file")


def render_file(
    plan: ScalePlan, phase: int, images: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """`images` is the operator's image table (the catalog's when None)."""
    ctx = RenderContext(db_password=PLACEHOLDER_PASSWORD)
    if images is not None:
        ctx = replace(ctx, images=dict(images))
    return render_phase(plan, phase, ctx)


def format_totals(phase: int, objects: list[dict[str, Any]]) -> str:
    cpu, memory = resource_totals(objects)
    return f"phase {phase}: requests cpu {cpu / 1000:g} cores, memory {memory / 2**30:.2f} GiB"


def _line(mark: str, obj: dict[str, Any], note: str = "") -> str:
    api_version, kind, name = object_key(obj)
    return f"{mark} {kind} {name} ({api_version}){note}"


def diff_lines(
    plan: ScalePlan, old_phase: int, new_phase: int, images: Mapping[str, str] | None = None
) -> list[str]:
    old, new = render_file(plan, old_phase, images), render_file(plan, new_phase, images)
    diff = diff_objects(old, new)
    lines = [_line("+", obj) for obj in diff.added]
    lines += [_line("~", obj) for obj in diff.changed]
    for obj in diff.removed:
        stateful = obj["metadata"].get("annotations", {}).get(ANNOTATION_STATEFUL) == "true"
        lines.append(
            _line(
                "-", obj, "  [stateful: retained unless statefulTiers=Migrate]" if stateful else ""
            )
        )
    lines += [format_totals(old_phase, old), format_totals(new_phase, new)]
    return lines


def plan_command(
    path: Path,
    phase: int,
    diff_from: int | None,
    out: TextIO | None = None,
    images: Mapping[str, str] | None = None,
) -> int:
    out = out or sys.stdout
    try:
        plan = load_plan(path)
    except (OSError, yaml.YAMLError, InvalidSpec) as err:
        print(f"phaseshift plan: {err}", file=sys.stderr)
        return 2
    if diff_from is None:
        objects = render_file(plan, phase, images)
        yaml.safe_dump_all(objects, out, sort_keys=False, explicit_start=True)
    else:
        out.write("\n".join(diff_lines(plan, diff_from, phase, images)) + "\n")
    return 0
