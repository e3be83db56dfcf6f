"""One-line error reporting for the command-line entry points."""
import sys


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 1."""


def run_cli(main, argv=None):
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
