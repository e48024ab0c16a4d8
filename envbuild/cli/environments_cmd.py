"""Named shared environments, versioned like Azure ML's NAME:VERSION (each version immutable;
NAME alone means the newest): create one (built from models, a requirements file or a lock, or
registered as it is from a prefix or an image), list, show, remove. Models run in one with
--environment NAME[:VERSION]; `envbuild check` says whether one fits a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.cli.common import add_json

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.shared.record import SharedEnvironment

HELP = "create, list, show and remove named shared environments"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="build or register a new version", description=_CREATE_DOC
    )
    create.add_argument("name", metavar="NAME", help="lower-case name, e.g. sklearn-cpu")
    create.add_argument(
        "--version", metavar="V", help="the version to create (default: the next number)"
    )
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from",
        dest="models",
        nargs="+",
        metavar="MODEL",
        help="one environment resolved for all these models (or their conflicts)",
    )
    source.add_argument(
        "-r", "--requirements", type=Path, metavar="FILE", help="a pip requirements file"
    )
    source.add_argument("--lock", type=Path, metavar="FILE", help="a pylock.toml envbuild wrote")
    source.add_argument("--conda", type=Path, metavar="FILE", help="a conda environment file")
    source.add_argument(
        "--prefix", type=Path, metavar="PATH", help="register an existing environment's folder"
    )
    source.add_argument("--image", metavar="IMAGE", help="register an existing Docker image")
    create.add_argument(
        "--python",
        metavar="VERSION|PATH",
        help="the Python to build with (default: the models', the lock's, else the newest "
        "found); with --prefix/--image, the X.Y it must have",
    )
    create.add_argument(
        "--strict-python", action="store_true", help="fail unless that exact Python is installed"
    )
    create.add_argument(
        "--installer", choices=("uv", "pip"), default="uv", help="install with uv (default)"
    )
    create.add_argument(
        "--compile-bytecode", action="store_true", help="compile every module at build time"
    )
    create.add_argument(
        "--offline", action="store_true", help="resolve and install from the local caches only"
    )
    image = create.add_argument_group("built as a Docker image (--as-image)")
    image.add_argument(
        "--as-image",
        action="store_true",
        help="build a Docker image holding the lock (for linux on this machine's architecture) "
        "instead of a virtualenv",
    )
    image.add_argument("--base-image", metavar="IMAGE", help="default: python:X.Y-slim")
    image.add_argument(
        "--ca-cert",
        type=Path,
        metavar="FILE",
        help="CA bundle the build stage trusts (default: $SSL_CERT_FILE, else $PIP_CERT)",
    )
    image.add_argument(
        "--network", default="host", metavar="MODE", help="the build's network (default: host)"
    )
    add_json(create)

    listing = actions.add_parser("list", help="the environments and their versions")
    listing.add_argument("name", nargs="?", metavar="NAME", help="only this name's versions")
    add_json(listing)

    show = actions.add_parser("show", help="one version: what is installed, how it was made")
    show.add_argument("ref", metavar="NAME[:VERSION]")
    add_json(show)

    remove = actions.add_parser(
        "remove",
        help="forget a version (what envbuild built is deleted; a registered "
        "prefix or image is left alone)",
    )
    remove.add_argument("ref", metavar="NAME[:VERSION]")
    remove.add_argument("--all", action="store_true", help="every version of NAME")
    add_json(remove)


_CREATE_DOC = (
    "Build a version from models (one lock for all of them), a requirements file or a lock, as "
    "a virtualenv in envbuild's data folder; or register an existing prefix or image as it is "
    "(what is installed is recorded by its own interpreter; it is never changed)."
)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.shared.store import Registry

    registry = Registry.default()
    action: Any = {"create": _create, "list": _list, "show": _show, "remove": _remove}[args.action]
    result: int = action(args, out, registry)
    return result


# -- create -----------------------------------------------------------------------------------
def _create(args: argparse.Namespace, out: Output, registry: Any) -> int:
    from envbuild.shared import create
    from envbuild.shared.names import check_name, check_version

    name = check_name(args.name)
    version = check_version(args.version) if args.version else registry.next_version(name)
    options = create.CreateOptions(
        python=args.python,
        installer=args.installer,
        compile_bytecode=args.compile_bytecode,
        offline=args.offline,
        strict_python=args.strict_python,
        as_image=args.as_image,
        base_image=args.base_image,
        ca_cert=args.ca_cert,
        network=args.network,
    )
    if args.as_image and not (args.models or args.requirements or args.lock):
        from envbuild.errors import UsageError

        raise UsageError("--as-image builds from --from, -r or --lock", field="--as-image")
    warnings: list[str] = []
    progress = out.progress
    if args.models:
        record = create.from_models(
            registry, name, version, args.models, options, warnings=warnings, on_progress=progress
        )
    elif args.requirements:
        record = create.from_requirements(
            registry,
            name,
            version,
            args.requirements,
            options,
            warnings=warnings,
            on_progress=progress,
        )
    elif args.lock:
        record = create.from_lock(
            registry, name, version, args.lock, options, warnings=warnings, on_progress=progress
        )
    elif args.conda:
        record = create.refuse_conda(args.conda)
    elif args.prefix:
        record = create.register_prefix(registry, name, version, args.prefix, options)
    else:
        record = create.register_image(registry, name, version, args.image, options)
    out.clear_progress()
    for warning in dict.fromkeys(warnings):
        out.warn(warning)
    data = {**_details(record), "warnings": list(dict.fromkeys(warnings))}
    out.result(data, lambda: f"created {record.ref}\n" + _show_text(record))
    return 0


# -- list, show, remove -------------------------------------------------------------------------
def _list(args: argparse.Namespace, out: Output, registry: Any) -> int:
    from envbuild.shared.names import check_name

    records = registry.versions(check_name(args.name)) if args.name else registry.all()

    def text() -> str:
        if not records:
            return "no shared environments (envbuild environments create NAME ... makes one)"
        rows = [["NAME", "VERSION", "RUNS IN", "PYTHON", "PACKAGES", "CREATED", "FROM", "WHERE"]]
        for r in records:
            s = r.summary()
            rows.append(
                [
                    s["name"],
                    s["version"],
                    s["runs_in"] + ("" if s["managed"] else " (registered)"),
                    s["python"],
                    str(s["distributions"]),
                    s["created"][:19].replace("T", " "),
                    str(s["source"]),
                    str(s["where"]),
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        )

    out.result({"environments": [r.summary() for r in records]}, text)
    return 0


def _details(record: SharedEnvironment) -> dict[str, Any]:
    data = record.to_dict()
    data["folder"] = str(record.folder)
    if record.lock_path is not None:
        data["lock_path"] = str(record.lock_path)
    if record.python and record.prefix:
        data["exists"] = Path(record.python).exists()
    return data


def _show_text(record: SharedEnvironment) -> str:
    installed = record.installed
    source = dict(record.source)
    how = str(source.pop("from", "?"))
    if how == "models":
        how += ": " + ", ".join(str(m.get("path")) for m in source.get("models", []))
    elif how in ("requirements", "lock"):
        how += f": {source.get('file')}"
    elif how == "prefix":
        how += f": registered {source.get('path')} (never changed by envbuild)"
    elif how == "image":
        how += f": registered {source.get('image')} (never changed by envbuild)"
    lines = [
        f"name         {record.ref}",
        f"created      {record.created} by envbuild {record.envbuild_version}",
        f"made from    {how}",
    ]
    if record.prefix:
        gone = "" if not record.python or Path(record.python).exists() else "  (MISSING)"
        lines.append(f"prefix       {record.prefix}{gone}")
    if record.image:
        lines.append(f"image        {record.image}  ({record.image_id})")
    if record.lock:
        lines.append(f"lock         {record.lock_path}  ({record.lock_digest})")
    lines += [
        f"python       {installed.python_version} ({installed.implementation})  "
        f"{record.python or installed.executable}",
        f"platform     {installed.platform}",
        f"installed    {len(installed.distributions)} distribution(s)",
    ]
    for _, dist in sorted(installed.distributions.items()):
        lines.append(f"  {dist.name}=={dist.version}")
    return "\n".join(lines)


def _show(args: argparse.Namespace, out: Output, registry: Any) -> int:
    from envbuild.shared.names import parse_ref

    record = registry.get(parse_ref(args.ref, field="NAME[:VERSION]"))
    out.result(_details(record), lambda: _show_text(record))
    return 0


def _remove(args: argparse.Namespace, out: Output, registry: Any) -> int:
    from envbuild.errors import UsageError
    from envbuild.shared.names import parse_ref

    ref = parse_ref(args.ref, field="NAME[:VERSION]")
    if ref.version is not None:
        records = [registry.get(ref)]
    else:
        records = registry.versions(ref.name) or [registry.get(ref)]
        if len(records) > 1 and not args.all:
            listing = ", ".join(r.version for r in records)
            raise UsageError(
                f"{ref.name} has {len(records)} versions ({listing}): name one, or pass --all",
                field="NAME[:VERSION]",
                hint=f"envbuild environments remove {ref.name}:{records[-1].version}",
            )
    from envbuild.shared.create import forget

    removed = []
    for record in records:
        for warning in forget(registry, record):
            out.warn(warning)
        removed.append(record.ref)
    out.result({"removed": removed}, "\n".join(f"removed {ref}" for ref in removed))
    return 0
