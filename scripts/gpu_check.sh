#!/usr/bin/env bash
# Every GPU path of the bundle in one prepared run (at most 8 minutes on one GPU), with
# whatever python3 is on PATH; figures to runs/gpu_check/gpu_check.json and a table.
#   bash scripts/gpu_check.sh            # on a GPU machine
#   bash scripts/gpu_check.sh --quick    # tiny configs on the CPU (what the tests run)
exec python3 "$(dirname "$0")/gpu_check.py" "$@"
