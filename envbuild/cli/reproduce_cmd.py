"""Prove the model's environment still rebuilds from its lock and still predicts what it
predicted when it was logged: lock, build, verify, predict, compare. For CI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import add_environment, add_json, add_kind, add_models, tolerance
from envbuild.envs.base import REPRODUCE

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.reproduction import Report

HELP = "rebuild from the lock, verify, predict and compare (for CI)"

MARK = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}


def configure(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    add_kind(parser, REPRODUCE)
    add_environment(parser)
    parser.add_argument(
        "--tolerance",
        type=tolerance,
        default=1e-6,
        metavar="RTOL",
        help="relative tolerance for floats in predictions (default 1e-6)",
    )
    parser.add_argument(
        "--python",
        metavar="VERSION|PATH",
        help="interpreter to use instead of discovery (venv kind)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="exit 0 when nothing failed even if a step could not run (no lock, no input "
        "example, no recorded output); without it such a result exits 9",
    )
    add_json(parser)


def render(report: Report) -> str:
    from envbuild.cli.output import source_lines

    lines = [f"reproduce {report.model} ({report.kind})"]
    if report.source is not None:
        lines += [f"  {line}" for line in source_lines(report.source)]
    for step in report.steps:
        line = f"  {MARK[step.status]} {step.name:<8} {step.seconds:6.1f} s"
        if step.message:
            line += f"  {step.message}"
        lines.append(line)
        if step.status == "failed" and step.hint:
            lines.append(f"                         hint: {step.hint}")
        diffs = step.details.get("differences") if step.name == "compare" else None
        for diff in diffs or []:
            lines.append(f"                         {diff}")
    if report.drift:
        lines.append("  drift (logged -> now):")
        for item in report.drift:
            lines.append(
                f"    {item['name']}: {item['logged'] or '-'} -> {item['installed'] or '-'}"
            )
    for note in report.partial:
        lines.append(f"  not checked: {note}")
    if report.result == "reproduced":
        result = "reproduced"
    elif report.result == "partial":
        result = "partial: nothing failed, but not everything was checked" + (
            "" if report.ok else f" (exit {report.exit_code}; --allow-partial accepts it)"
        )
    else:
        result = f"NOT reproduced (exit {report.exit_code})"
    lines.append(f"  result: {result}")
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import open_source
    from envbuild.junit import write_junit
    from envbuild.model import load_model
    from envbuild.reproduction import reproduce

    if args.environment:  # an unknown name is a usage error before any step runs
        from envbuild.shared.names import parse_ref
        from envbuild.shared.store import Registry

        Registry.default().get(parse_ref(args.environment))
    reports = []
    for model in args.models:
        # a model that cannot be read at all is exit 2, one that cannot be reached exit 3
        source = open_source(args, out, model)
        spec = load_model(source.path)
        report = reproduce(
            spec,
            source=source.provenance,
            kind=args.kind,
            rtol=args.tolerance,
            python=args.python,
            allow_partial=args.allow_partial,
            environment=args.environment,
            allow_mismatch=args.allow_mismatch,
            on_progress=out.progress,
        )
        out.clear_progress()
        for warning in report.warnings:
            out.warn(warning)
        reports.append(report)
        if not out.json_mode:
            out.result({}, render(report))
    if args.junit:
        write_junit(args.junit, reports)
    data = (
        reports[0].to_dict()
        if len(reports) == 1
        else {
            "ok": all(r.ok for r in reports),
            "exit_code": next((r.exit_code for r in reports if not r.ok), 0),
            "models": [r.to_dict() for r in reports],
        }
    )
    if out.json_mode:
        out.result(data)
    code = data["exit_code"]
    return code if isinstance(code, int) else 1
