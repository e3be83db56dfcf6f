#!/usr/bin/env bash
# Problem 3: bash hw2_3.sh input.json OUT_DIR model.ckpt  ->  OUT_DIR/<concept>/<prompt>/*.png
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m p3.generate "$@"
