"""One-line error reporting shared by the Problem 1 command-line tools."""
import sys


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 1."""


def run_cli(main, argv=None):
    """Run ``main(argv)``; a UserError becomes ``error: ...`` on stderr and exit status 1."""
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
