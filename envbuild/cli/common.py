"""Arguments several commands share, defined once."""

from __future__ import annotations

import argparse


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="model folder (holding MLmodel) or MLmodel file"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
