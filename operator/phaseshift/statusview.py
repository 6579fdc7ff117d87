"""`phaseshift status NAME`: a ScalePlan's phase, release, rollout, conditions and history.

`format_status` is pure (a parsed plan in, lines out); `status_command` only fetches.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO, cast

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from phaseshift.api import GROUP, PLURAL, VERSION, InvalidSpec, ScalePlan, parse_plan


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"


def format_status(plan: ScalePlan) -> list[str]:
    status = plan.status
    lines = [f"{plan.namespace}/{plan.name}"]
    if status.phase is None:
        return [*lines, "  not evaluated yet"]
    target = f" -> {status.target_phase}" if status.target_phase != status.phase else ""
    lines.append(f"  phase       {status.phase}{target}")
    if status.users is not None:
        lines.append(f"  users       {status.users}")
    if status.release is not None:
        colour = f" (live colour {status.live_colour})" if status.live_colour else ""
        lines.append(
            f"  release     {status.release.app.image} [{status.release.revision}]{colour}"
        )
    if status.transition is not None:
        move = status.transition
        lines.append(
            f"  transition  {move.from_} -> {move.to}, step {move.current_step} "
            f"({move.step + 1}/{len(move.steps)}) since {_when(move.started_at)}"
        )
    if status.rollout is not None:
        ro = status.rollout
        step = f" {ro.step}" if ro.step else ""
        lines.append(f"  rollout     {ro.strategy} of {ro.image}: {ro.state}{step}")
        if ro.canary is not None:
            canary = ro.canary
            lines.append(
                f"              canary {canary.weight_percent}%, checks passed "
                f"{canary.iteration}, failed {canary.failed_checks}"
            )
        if ro.message:
            lines.append(f"              {ro.message}")
    if status.last_decision is not None:
        d = status.last_decision
        lines.append(f"  decision    {d.reason} -> phase {d.target} at {_when(d.at)}")
    lines.append("  conditions")
    for cond in status.conditions:
        message = f": {cond.message}" if cond.message else ""
        lines.append(f"    {cond.type:<18} {cond.status:<7} {cond.reason}{message}")
    if status.history:
        lines.append("  history")
        for h in status.history[-5:]:
            lines.append(
                f"    {_when(h.at)}  {h.from_} -> {h.to}  {h.reason} ({h.duration_seconds:.0f}s)"
            )
    return lines


def status_command(
    name: str, *, namespace: str, kubeconfig: Path | None, out: TextIO | None = None
) -> int:
    out = out or sys.stdout
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)
        body = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        plan = parse_plan(cast(dict[str, Any], body))
    except ApiException as e:
        print(f"phaseshift status: {namespace}/{name}: {e.reason} ({e.status})", file=sys.stderr)
        return 1
    except (config.ConfigException, InvalidSpec) as e:
        print(f"phaseshift status: {e}", file=sys.stderr)
        return 2
    out.write("\n".join(format_status(plan)) + "\n")
    return 0
