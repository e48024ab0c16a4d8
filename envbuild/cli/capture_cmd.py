"""Capture what a saved model really needs, in the environment it was logged in: load it and
predict on its input example in that interpreter (--python, default: the one running envbuild),
record every package imported, pinned to its installed version (local labels such as +cu118
kept), and show how that differs from the model's env files. With --write, rewrite
requirements.txt, python_env.yaml and conda.yaml (the same pins in all three), write pylock.toml
(the installed versions of the whole dependency closure) and envbuild_expected_output.json (the
predictions), all or nothing."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from envbuild.cli.common import add_json, add_model

if TYPE_CHECKING:
    from envbuild.capturing.engine import Capture, Changes
    from envbuild.capturing.writer import Written
    from envbuild.cli.output import Output

HELP = "record what a model imports, pinned to the installed versions (--write: update its files)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument(
        "--write",
        action="store_true",
        help="rewrite requirements.txt, python_env.yaml and conda.yaml, and write pylock.toml "
        "and envbuild_expected_output.json",
    )
    parser.add_argument(
        "--python",
        metavar="PATH",
        help="the interpreter of the environment the model is logged from (default: the one "
        "running envbuild)",
    )
    parser.add_argument(
        "--platform",
        dest="platforms",
        action="append",
        metavar="PLATFORM",
        help="with --write: lock for these platforms (default: linux/amd64 and this machine's)",
    )
    parser.add_argument(
        "--extra-index-url",
        dest="extra_index_urls",
        action="append",
        default=[],
        metavar="URL",
        help="with --write: an index holding builds no known index has, repeatable",
    )
    parser.add_argument(
        "--offline", action="store_true", help="with --write: lock from uv's cache only"
    )
    add_json(parser)


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def render(capture: Capture, changes: Changes, written: Written | None, shown_model: str) -> str:
    lines = [
        f"{shown_model}: {len(capture.packages)} requirements captured with Python "
        f"{capture.python_version} ({capture.python}) in {capture.seconds:.1f} s"
    ]
    width = max((len(p.requirement) for p in capture.packages), default=0)
    for package in capture.packages:
        notes = []
        if package.modules:
            notes.append(_listing(list(package.modules), 3))
        if package.found_by == ("static",):
            notes.append("static import only")
        elif package.phase == "predict":
            notes.append("imported while predicting")
        if package.index:
            notes.append(f"from {package.index}")
        lines.append(f"  {package.requirement:<{width}}  {'; '.join(notes)}".rstrip())
    lines.append(f"closure: {len(capture.closure)} packages at their installed versions")
    if capture.unmapped_modules:
        lines.append(f"unmapped modules: {', '.join(capture.unmapped_modules)}")
    source = changes.source or "the model's files"
    if not changes.changed:
        lines.append(f"no change against {source}")
    else:
        parts = []
        if changes.added:
            parts.append(f"added {len(changes.added)}: {_listing(list(changes.added))}")
        if changes.removed:
            parts.append(f"removed {len(changes.removed)}: {_listing(list(changes.removed))}")
        if changes.repinned:
            shown = [f"{a} -> {b}" for a, b in changes.repinned]
            parts.append(f"re-pinned {len(shown)}: {_listing(shown, 5)}")
        if changes.python_before != changes.python_after:
            parts.append(f"python {changes.python_before or '-'} -> {changes.python_after}")
        lines.append(f"against {source}: " + "; ".join(parts))
    if capture.expected_output is None:
        lines.append("no input example: predictions not recorded")
    if written is not None:
        lines.append(
            f"wrote {', '.join(written.files)} ({len(written.lock.packages)} packages locked for "
            f"Python {written.lock.python} on {', '.join(written.lock.platforms)})"
        )
        if written.removed:
            lines.append(f"removed {', '.join(written.removed)}")
    else:
        lines.append("run again with --write to update the model's files")
    return "\n".join(lines)


def _refuse_write(model: str) -> Exception:
    from envbuild.errors import UsageError
    from envbuild.sources.refs import shown

    return UsageError(
        f"{shown(model)}: capture --write rewrites the model's files, and this model is a "
        "downloaded copy, kept read-only",
        hint="run capture without --write to see what it would record, or download the model "
        "into a folder of your own (mlflow artifacts download -u URI -d DIR), run capture "
        "--write there and log that folder again",
    )


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.capturing.engine import capture_model, compare
    from envbuild.capturing.writer import write_capture
    from envbuild.cli.common import open_source
    from envbuild.cli.output import shown_path
    from envbuild.envspec import read_env
    from envbuild.errors import ModelError
    from envbuild.model import load_model
    from envbuild.sources import is_uri

    if args.write and is_uri(args.model) and not args.model.lower().startswith("file:"):
        raise _refuse_write(args.model)  # before anything is downloaded
    source = open_source(args, out)
    if args.write and source.read_only:
        raise _refuse_write(args.model)
    spec = load_model(source.path)
    for warning in spec.warnings:
        out.warn(warning)
    try:
        current = read_env(spec)
    except ModelError as exc:  # no usable env file yet: capture is how to make one
        out.warn(f"current environment files: {exc}")
        current = None
    capture = capture_model(spec, python=args.python, on_progress=out.progress)
    changes = compare(capture, current)
    written = None
    if args.write:
        written = write_capture(
            spec,
            capture,
            platforms=args.platforms,
            extra_index_urls=args.extra_index_urls,
            offline=args.offline,
            on_progress=out.progress,
        )
    out.clear_progress()
    warnings = list(capture.warnings) + (list(written.lock.warnings) if written else [])
    for warning in warnings:
        out.warn(warning)
    data: dict[str, Any] = capture.to_dict()
    data["changes"] = changes.to_dict()
    data["written"] = written.to_dict() if written else None
    data["warnings"] = warnings
    data["expected_output"] = (
        json.loads(capture.expected_output) if capture.expected_output is not None else None
    )
    out.result(data, lambda: render(capture, changes, written, shown_path(spec.path)))
    return 0
