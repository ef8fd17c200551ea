"""Set an account's password (stored only as a bcrypt hash)

Passwords live in ``<data_dir>/passwords.json`` as bcrypt hashes, one per account,
readable by the hub's user only (mode 0600). The only clear text ever written to disk is the
demo's own sheet of its throw-away accounts (hub/demo.py), also mode 0600.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
from pathlib import Path

import bcrypt

PASSWORD_FILE_NAME = "passwords.json"
# No look-alike characters (0/O, 1/l/I): students type these from a printed sheet.
_READABLE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def password_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / PASSWORD_FILE_NAME


def load_hashes(path: str | Path) -> dict[str, str]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def save_hashes(path: str | Path, hashes: dict[str, str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Create with 0600 from the start: the hashes must never be world-readable, even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a temporary file left by an earlier crash keeps its own mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(hashes, out, indent=1, sort_keys=True)
    os.replace(temporary, path)


DEFAULT_ROUNDS = 10  # bcrypt's cost: about 50 ms a check here


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=DEFAULT_ROUNDS)).decode()


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # a corrupted hash must fail closed, not crash the login page
        return False


def readable_password(groups: int = 3, size: int = 4) -> str:
    return "-".join("".join(secrets.choice(_READABLE_ALPHABET) for _ in range(size)) for _ in range(groups))


def set_passwords(data_dir: str | Path, passwords: dict[str, str]) -> None:
    """Store the hashes of ``passwords`` (account -> clear text), keeping other accounts."""
    path = password_file(data_dir)
    hashes = load_hashes(path)
    hashes.update({account: hash_password(password) for account, password in passwords.items()})
    save_hashes(path, hashes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("account", help="account name, as in the alliance file")
    parser.add_argument("--data-dir", default=os.environ.get("GPU_COMMONS_DATA_DIR", "data"))
    parser.add_argument("--generate", action="store_true", help="make a readable random password and print it")


def run(args: argparse.Namespace) -> int:
    if args.generate:
        password = readable_password()
        print(f"{args.account}: {password}")
    else:
        password = getpass.getpass(f"New password for {args.account}: ")
        if len(password) < 8:
            print("error: the password must have at least 8 characters")
            return 2
    set_passwords(args.data_dir, {args.account: password})
    return 0
