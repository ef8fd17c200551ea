"""Run the demo alliance: fresh passwords for every account, then the hub on http://127.0.0.1:8000

Passwords are new at every run and stored for the hub only as bcrypt hashes. The sheet of
accounts and passwords is printed only to a terminal: when the output goes to a file or a
pipe (``make demo > log``), where others might read it, it is left out and the demo names
the one file that holds it, ``<data-dir>/secrets/demo-passwords.txt``, readable by its owner
only (mode 0600, rewritten at each run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hub import launch
from hub.passwords import readable_password, set_passwords
from quota.alliance import AllianceError, load_alliance
from quota.private_files import private_dir


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
    sheet = password_sheet(alliance, passwords)
    sheet_file = write_private(sheet_path(args.data_dir), sheet)
    print(f"\n  GPU Commons demo: {alliance.name}")
    print(f"  Open http://{args.ip}:{args.port} in a browser.\n")
    if sys.stdout.isatty():
        print(sheet)
        print(f"  (also in {sheet_file}, readable by {_owner()} only)")
    else:
        print(f"  The accounts and their passwords are not printed: this output is not a terminal, and a log may be "
              f"read by others.\n  Read them in {sheet_file} (mode 0600, readable by {_owner()} only).")
    simulated = [pool.id for pool in alliance.pools if pool.simulated]
    if simulated:
        print(f"\n  Pools {', '.join(simulated)} are SIMULATED: this machine has no GPU; bookings work, CUDA does not.")
    print(f"  Data: {args.data_dir}   Stop: Ctrl-C\n", flush=True)
    return launch.run(args)


def sheet_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "secrets" / "demo-passwords.txt"


def password_sheet(alliance, passwords: dict[str, str]) -> str:
    lines = [f"  {'account':<14} {'role':<13} {'school':<8} password"]
    for account, role in alliance.accounts().items():
        school = alliance.school_of(account)
        lines.append(f"  {account:<14} {role:<13} {(school.id if school else '-'):<8} {passwords[account]}")
    return "\n".join(lines)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the start (in a 0700 directory)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    return path.resolve()


def _owner() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "this user"
