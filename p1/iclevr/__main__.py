"""``python3 -m p1.iclevr``: the Lab 6 results (see ``p1.iclevr.generate``)."""
from p1.errors import run_cli
from p1.iclevr.generate import main

if __name__ == "__main__":
    run_cli(main)
