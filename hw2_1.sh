#!/usr/bin/env bash
# Problem 1: bash hw2_1.sh OUT_DIR  ->  OUT_DIR/{mnistm,svhn}/{digit}_{001..050}.png
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m p1.generate "$@"
