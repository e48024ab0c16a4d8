"""Does a shared environment satisfy these models? One row per requirement of each model (ok,
missing, version, marker, local-label, python) and the conflicts among what is installed that
touch the model's packages. Exit 0 when every model is satisfied, 8 when one is not, 2 when a
model cannot be read."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from envbuild.cli.common import add_json, add_models, load_source

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.shared.record import SharedEnvironment
    from envbuild.shared.verdict import Verdict

HELP = "check a shared environment against models, requirement by requirement"


def configure(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    parser.add_argument(
        "--environment",
        required=True,
        metavar="NAME[:VERSION]",
        help="the shared environment to check (NAME alone: its newest version)",
    )
    add_json(parser)


def _where(record: SharedEnvironment) -> str:
    place = record.prefix if record.prefix else f"image {record.image}"
    installed = record.installed
    return f"{record.ref}  ({place}; Python {installed.python_version} on {installed.platform})"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_verdict(verdict: Verdict, record: SharedEnvironment) -> str:
    counts = ", ".join(f"{status} {n}" for status, n in verdict.counts().items())
    state = "satisfied" if verdict.satisfied else f"NOT satisfied ({len(verdict.problems)} row(s))"
    lines = [
        f"model        {verdict.model}",
        f"environment  {_where(record)}",
        f"rows from    {verdict.source}  ({counts})",
        f"verdict      {state}",
        "",
    ]
    rows = [["STATUS", "PACKAGE", "WANTED", "INSTALLED", "WHERE"]]
    for row in verdict.rows:
        rows.append([row.status, row.name, row.wanted, row.installed or "-", row.origin or "-"])
    lines += _table(rows)
    for row in verdict.problems:
        lines.append(f"  {row.status}: {row.message}")
    return "\n".join(lines)


def render_models(results: list[dict[str, Any]], record: SharedEnvironment) -> str:
    lines = [f"environment  {_where(record)}", ""]
    rows = [["MODEL", "VERDICT", "ROWS", "FIRST PROBLEM"]]
    for item in results:
        verdict: Verdict | None = item.get("verdict")
        if verdict is None:
            rows.append([item["model"], "error", "-", item["error"]])
            continue
        first = verdict.problems[0] if verdict.problems else None
        problem = "-"
        if first is not None:
            problem = f"{first.status}: {first.message}" + (
                f" ({first.origin})" if first.origin else ""
            )
            if len(verdict.problems) > 1:
                problem += f"; and {len(verdict.problems) - 1} more"
        counts = " ".join(f"{s}:{n}" for s, n in verdict.counts().items())
        rows.append(
            [verdict.model, "fits" if verdict.satisfied else "does not fit", counts, problem]
        )
    return "\n".join(lines + _table(rows, indent=""))


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.envs.registry import SHARED_KIND
    from envbuild.errors import EnvbuildError, ExitCode
    from envbuild.shared.names import parse_ref
    from envbuild.shared.store import Registry
    from envbuild.shared.use import installed_now
    from envbuild.shared.verdict import judge
    from envbuild.shared.wanted import model_requirements

    record = Registry.default().get(parse_ref(args.environment))
    installed, notes = installed_now(record, SHARED_KIND)
    for note in notes:
        out.warn(note)
    results: list[dict[str, Any]] = []
    for model in args.models:
        try:
            env = load_source(args, out, model).env
        except EnvbuildError as exc:
            if len(args.models) == 1:
                raise
            results.append({"model": model, "error": str(exc), "exit_code": int(exc.exit_code)})
            continue
        verdict = judge(
            model_requirements(env),
            installed,
            model=model,
            environment=record.ref,
            warnings=notes,
        )
        for warning in verdict.warnings:
            if warning not in notes:
                out.warn(f"{model}: {warning}")
        results.append({"model": model, "verdict": verdict})
    verdicts = [item["verdict"] for item in results if "verdict" in item]
    if any("error" in item for item in results):
        code = int(ExitCode.BAD_INPUT)
    elif all(v.satisfied for v in verdicts):
        code = int(ExitCode.OK)
    else:
        code = int(ExitCode.ENVIRONMENT_UNSUITABLE)
    if len(args.models) == 1:
        verdict = verdicts[0]
        data = {"shared_environment": record.summary(), **verdict.to_dict(), "exit_code": code}
        out.result(data, lambda: render_verdict(verdict, record))
        return code
    data = {
        "shared_environment": record.summary(),
        "satisfied": code == 0,
        "exit_code": code,
        "models": [item["verdict"].to_dict() if "verdict" in item else item for item in results],
    }
    out.result(data, lambda: render_models(results, record))
    return code
