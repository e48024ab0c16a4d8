"""List what envbuild's cache holds (environments, locks, downloaded models, conda prefixes,
packs, the images of --kind docker and the build stages image builds leave), prune what is old
or over a size, or clean it all. Entries a running command uses are never removed."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from envbuild.cli.common import add_json

if TYPE_CHECKING:
    from envbuild.cache.inventory import Entry, Pruned
    from envbuild.cli.output import Output

HELP = "list, prune or clean envbuild's cache"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every entry: kind, key, size, created, last used, users")
    add_json(listing)
    prune = sub.add_parser("prune", help="remove entries unused for a while, or over a size")
    prune.add_argument("--older-than", metavar="AGE", help="unused for AGE (30d, 12h, 2w)")
    prune.add_argument(
        "--max-size", metavar="SIZE", help="then least recently used first, down to SIZE (20G)"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    add_json(prune)
    clean = sub.add_parser("clean", help="remove everything not in use")
    clean.add_argument("--yes", action="store_true", help="do not ask (on a terminal)")
    clean.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    add_json(clean)


def _size(size: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}B"


def _when(moment: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment)) if moment else "-"


def _table(found: list[Entry]) -> str:
    if not found:
        return "the cache is empty"
    rows = [f"{'kind':<10} {'key':<14} {'size':>8}  {'created':<16}  {'last used':<16}  used by"]
    for e in found:
        who = ", ".join(e.users[:3]) + (f" +{len(e.users) - 3}" if len(e.users) > 3 else "")
        mark = " (in use)" if e.in_use else ""
        key = e.key.removeprefix("sha256:")[:12]
        rows.append(
            f"{e.kind:<10} {key:<14} {_size(e.size):>8}  {_when(e.created):<16}  "
            f"{_when(e.last_used):<16}  {who or e.path}{mark}"
        )
    rows.append(f"total {_size(sum(e.size for e in found))} in {len(found)} entries")
    return "\n".join(rows)


def _pruned_text(result: Pruned) -> str:
    verb = "would remove" if result.dry_run else "removed"
    lines = [f"{verb} {len(result.removed)} entries, {_size(result.freed)}"]
    for e in result.removed:
        lines.append(f"  {e.kind:<10} {e.key.removeprefix('sha256:')[:12]:<14} {_size(e.size):>8}")
    for e in result.kept_in_use:
        lines.append(f"  kept (in use) {e.kind} {e.key.removeprefix('sha256:')[:12]}")
    lines.append(f"left {_size(result.remaining)}")
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cache import cache_root
    from envbuild.cache.inventory import entries, parse_duration, parse_size, prune
    from envbuild.errors import UsageError

    if args.action == "list":
        found = entries()
        data: dict[str, Any] = {
            "root": str(cache_root()),
            "entries": [e.to_dict() for e in found],
            "total_size": sum(e.size for e in found),
        }
        out.result(data, lambda: _table(found))
        return 0
    if args.action == "prune":
        if args.older_than is None and args.max_size is None:
            raise UsageError(
                "say what to prune: --older-than AGE and/or --max-size SIZE",
                hint="`envbuild cache clean` removes everything",
            )
        result = prune(
            older_than=parse_duration(args.older_than) if args.older_than else None,
            max_size=parse_size(args.max_size) if args.max_size else None,
            dry_run=args.dry_run,
            on_progress=out.progress,
        )
    else:
        if not args.yes and not args.dry_run and out.interactive and not out.json_mode:
            answer = out.ask(f"remove everything in {cache_root()} that is not in use? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                out.info("nothing removed")
                return 0
        result = prune(everything=True, dry_run=args.dry_run, on_progress=out.progress)
    out.result(result.to_dict(), lambda: _pruned_text(result))
    return 0
