"""`gpu-commons`: the operator's command line.

Each sub-command lives in the module that owns its idea; this file only wires them up.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module that provides `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "demo": "hub.demo",
    "hub": "hub.launch",
    "set-password": "hub.passwords",
    "quota-serve": "quota.serve",
    "backup": "quota.backup",
    "library": "quota.library",
    "simulate": "quota.simulator.cli",
    "scenario": "quota.simulator.scenario_cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu-commons", description="Operate a GPU Commons alliance.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of the platform is not installed in this build
            raise
        sub = subparsers.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
