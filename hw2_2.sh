#!/usr/bin/env bash
# Problem 2: bash hw2_2.sh NOISE_DIR OUT_DIR UNet.pt  ->  OUT_DIR/<noise name>.png
# DDIM, 50 uniform steps, eta 0, on the GPU when there is one.
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m p2.generate "$@"
