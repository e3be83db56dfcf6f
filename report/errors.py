"""One-line errors for bad input, as in every entry point of the bundle."""
import sys


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 1."""


def run_cli(main, argv=None):
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
