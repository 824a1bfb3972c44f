"""The ``minseg`` command. Subcommands join here as the issues that build them land."""

from __future__ import annotations

import argparse
import sys

from . import __version__

SUBCOMMANDS: dict = {}  # name -> (help text, function taking parsed args); empty until the CLI issue lands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minseg",
        description="Semantic segmentation from scratch on NumPy/CuPy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"minseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in SUBCOMMANDS.items():
        commands.add_parser(name, help=help_text)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        available = ", ".join(SUBCOMMANDS) or "none yet (demo, train, evaluate and predict are planned)"
        print(f"minseg {__version__}\nsubcommands: {available}\nrun `minseg --help` for usage")
        return 0
    return SUBCOMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(main())
