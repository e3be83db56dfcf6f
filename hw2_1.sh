#!/usr/bin/env bash
# Problem 1: bash hw2_1.sh OUT_DIR  ->  OUT_DIR/{mnistm,svhn}/{digit}_{001..050}.png
echo "error: Problem 1 is not built yet (see the README)" >&2
exit 1
