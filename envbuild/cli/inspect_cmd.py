"""Show what envbuild reads from a model folder: flavors, loader, Python, requirements, signature."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_json, add_model

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.inspection import Inspection
    from envbuild.sources import Provenance

HELP = "summarize a model folder and its environment"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    add_json(parser)


def render(report: Inspection, source: Provenance | None = None) -> str:
    from envbuild.cli.output import source_lines

    data = report.to_dict()
    lines = [f"model        {data['path']}"]
    if source is not None:
        lines += source_lines(source)
    lines.append(f"flavors      {', '.join(data['flavors'])}")
    lines.append(f"loader       {data['loader_module'] or '-'}")
    py = data["python"]
    lines.append(f"python       {py['requested'] + '  (from ' + py['source'] + ')' if py else '-'}")
    for key, label in (
        ("model_uuid", "model uuid"),
        ("run_id", "run id"),
        ("mlflow_version", "mlflow"),
        ("utc_time_created", "created"),
    ):
        if data[key]:
            lines.append(f"{label:<12} {data[key]}")
    sig = data["signature"]
    if sig:
        n_in = len(sig["inputs"] or [])
        n_out = len(sig["outputs"] or [])
        lines.append(
            f"signature    {sig['kind']}: {n_in} input(s), {n_out} output(s)"
            + (f", {len(sig['params'])} param(s)" if sig["params"] else "")
        )
    else:
        lines.append("signature    -")
    lines.append(f"example      {data['input_example'] or '-'}")
    interp = data["interpreter"] or {}
    if "error" in interp:
        lines.append(f"interpreter  none: {interp['error']}")
    elif interp:
        lines.append(f"interpreter  {interp['version']}  {interp['path']}  ({interp['reason']})")
    lines.append(f"requirements {len(data['requirements'])} from {data['requirements_source']}")
    for origin_req in report.env.requirements:
        lines.append(f"  {origin_req.text:<40} {origin_req.origin}")
    for index, kind in enumerate(data["kinds"]):
        state = "can build" if kind["can_build"] else f"cannot: {kind['reason']}"
        if kind["chosen"]:
            why = data["kind"]["reason"]
            state += f"  (chosen: {why})" if why else "  (chosen by default)"
        lines.append(f"{'kinds' if index == 0 else '':<12} {kind['kind']:<7} {state}")
    if data["conda_dependencies"]:
        lines.append(
            f"conda        {len(data['conda_dependencies'])} package(s), channels: "
            f"{', '.join(data['channels']) or '-'}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import open_source
    from envbuild.inspection import inspect_model

    source = open_source(args, out)
    report = inspect_model(source.path)
    for warning in report.warnings:
        out.warn(warning)
    data = {**report.to_dict(), "source": source.provenance.to_dict()}
    out.result(data, lambda: render(report, source.provenance))
    return 0
