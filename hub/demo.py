"""Run the demo alliance: fresh passwords for every account, then the hub on http://127.0.0.1:8000

Passwords are new at every run, printed once here and stored only as bcrypt hashes.
"""

from __future__ import annotations

import argparse

from hub import launch
from hub.passwords import readable_password, set_passwords
from quota.alliance import AllianceError, load_alliance


def add_arguments(parser: argparse.ArgumentParser) -> None:
    launch.add_arguments(parser)
    parser.set_defaults(alliance="alliances/demo.yaml", data_dir="data/demo")
    for action in parser._actions:
        if action.dest == "alliance":
            action.required = False


def run(args: argparse.Namespace) -> int:
    try:
        alliance = load_alliance(args.alliance)
    except AllianceError as exc:
        print(f"error: {exc}")
        return 2
    passwords = {account: readable_password() for account in alliance.accounts()}
    set_passwords(args.data_dir, passwords)
    roles = alliance.accounts()
    print(f"\n  GPU Commons demo: {alliance.name}")
    print(f"  Open http://{args.ip}:{args.port} in a browser.\n")
    print(f"  {'account':<14} {'role':<13} {'school':<8} password")
    for account, role in roles.items():
        school = alliance.school_of(account)
        print(f"  {account:<14} {role:<13} {(school.id if school else '-'):<8} {passwords[account]}")
    simulated = [pool.id for pool in alliance.pools if pool.simulated]
    if simulated:
        print(f"\n  Pools {', '.join(simulated)} are SIMULATED: this machine has no GPU; bookings work, CUDA does not.")
    print(f"  Data: {args.data_dir}   Stop: Ctrl-C\n", flush=True)
    return launch.run(args)
