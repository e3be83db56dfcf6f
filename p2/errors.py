"""One-line errors for bad user input (the convention shared by every entry point)."""

import sys
from typing import Callable, List, Optional


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 1."""


def run_cli(main: Callable[[Optional[List[str]]], None], argv: Optional[List[str]] = None) -> None:
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
