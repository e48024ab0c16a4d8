"""Print a CI job (GitHub Actions or GitLab CI) that runs `envbuild reproduce` on model folders or
MLflow model URIs (models:/NAME@ALIAS: the tracking server and its credentials then come from the
CI's secrets) and publishes the JUnit report; ready to commit."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "print a CI job that runs envbuild reproduce"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", choices=("github", "gitlab"))
    parser.add_argument(
        "models",
        nargs="*",
        default=["model"],
        metavar="MODEL",
        help="model folders, relative to the repository root, or MLflow URIs such as "
        "models:/NAME@ALIAS (default: model)",
    )
    from envbuild.envs.base import REPRODUCE
    from envbuild.envs.registry import DEFAULT_KIND, kinds

    parser.add_argument(
        "--kind",
        choices=kinds(REPRODUCE),
        default=DEFAULT_KIND,
        help="the kind the job reproduces the model in",
    )


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.ci import DESTINATIONS, render_ci

    text = render_ci(args.provider, args.models, kind=args.kind)
    out.info(f"save it as {DESTINATIONS[args.provider]}")
    out.result({"provider": args.provider, "path": DESTINATIONS[args.provider], "text": text}, text)
    return 0
