"""`python -m quota serve` runs the quota service (what JupyterHub starts)."""

import sys

from quota.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["serve"]:
        args = ["quota-serve", *args[1:]]
    sys.exit(main(args))
