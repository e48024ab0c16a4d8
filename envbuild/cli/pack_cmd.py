"""Pack the model's environment into one relocatable .tar.gz: the interpreter itself, the locked
packages and envbuild's runner, for machines without envbuild or the model's Python (Spark
executors). Unpack with tar and run bin/python envbuild/runtime/runner.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import add_json, add_model

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.pack import Packed

HELP = "pack the model's environment into a relocatable archive (for Spark executors)"


def configure(parser: argparse.ArgumentParser) -> None:
    from envbuild.envs.registry import KINDS

    add_model(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE.tar.gz",
        help="where to write the archive (a folder: the default name in it); default: the "
        "default name in the current folder",
    )
    packable = [name for name, kind in KINDS.items() if kind.packer]
    parser.add_argument(
        "--kind",
        default="venv",
        metavar="KIND",
        help=f"kind of environment to pack ({', '.join(packable)}; default venv)",
    )
    parser.add_argument(
        "--platform",
        metavar="linux/ARCH",
        help="the platform the archive is for: this machine's (the default); another is refused",
    )
    parser.add_argument(
        "--python", metavar="VERSION|PATH", help="use this Python instead of the model's"
    )
    parser.add_argument(
        "--strict-python",
        action="store_true",
        help="fail unless the model's exact Python version is installed",
    )
    parser.add_argument(
        "--install-python",
        action="store_true",
        help="let uv download the model's Python when it is not installed",
    )
    parser.add_argument(
        "--offline", action="store_true", help="resolve and install from the local caches only"
    )
    add_json(parser)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import load_specs
    from envbuild.pack import PackOptions, pack

    options = PackOptions(
        kind=args.kind,
        platform=args.platform,
        python=args.python,
        strict_python=args.strict_python,
        install_python=args.install_python,
        offline=args.offline,
    )
    spec, env = load_specs(args, out)
    output = args.output if args.output is not None else Path.cwd()
    packed = pack(spec, env, options, output=output, on_progress=out.progress)
    out.clear_progress()
    for warning in packed.warnings:
        out.warn(warning)
    out.result(packed.to_dict(), lambda: _text(packed))
    return 0


def _text(packed: Packed) -> str:
    manifest = packed.manifest
    python = manifest["python"]
    state = f"built in {packed.seconds:.1f} s" if packed.built else "reused from the cache"
    unpack = "mkdir env && tar -xzf ARCHIVE -C env"
    relocate = manifest.get("relocate")
    if relocate:  # conda: the unpacked folder is written over the packages' placeholders
        unpack += f" && env/{python['executable']} env/{relocate['script']}"
    conda = manifest.get("conda_lock")
    conda_line = (
        [f"conda     {conda['digest']}  ({conda['packages']} conda packages, {conda['platform']})"]
        if conda
        else []
    )
    return "\n".join(
        [
            f"archive   {packed.path}  ({packed.size / 1e6:.0f} MB, {state})",
            f"python    {python['version']}  ({python['executable']}, {manifest['platform']}, "
            f"{manifest['libc'] or 'libc unknown'})",
            *conda_line,
            f"lock      {manifest['lock']['digest']}  ({manifest['lock']['packages']} packages)",
            f"unpack    {unpack}",
            f"run       env/{python['executable']} env/{manifest['runner']} predict --model MODEL "
            "--input FILE",
        ]
    )
