"""The ``fastdat`` command line: thin wrappers over library functions."""

from __future__ import annotations

import argparse
import sys

from fastdat import __version__


def _cmd_collimators(args: argparse.Namespace) -> int:
    from fastdat.simulate.collimator import COLLIMATORS

    print(f"{'name':<14} {'D (mm)':>7} {'L (mm)':>7} {'FWHM@100mm':>11}")
    for c in COLLIMATORS.values():
        print(
            f"{c.name:<14} {c.hole_diameter_mm:7.2f} {c.hole_length_mm:7.2f} "
            f"{c.fwhm_mm(100.0):11.2f}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the ``fastdat`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="fastdat", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastdat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collimators", help="list the named collimators and their resolution")
    p.set_defaults(func=_cmd_collimators)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastdat`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
