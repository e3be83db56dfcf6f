#!/usr/bin/env bash
# Build a virtual environment with everything the bundle and its tests need.
#
#   bash scripts/setup_env.sh                  # graders' stack in .venv38: Python 3.8,
#                                              # torch 1.11.0, torchvision 0.12.0, transformers 4.19.2
#   bash scripts/setup_env.sh --current .venv  # current releases with the default python3
#
# Re-running is cheap: a stamp records what was installed and nothing is reinstalled
# unless the requirement files changed.
set -euo pipefail
cd "$(dirname "$0")/.."

stack=graders
if [ "${1:-}" = "--current" ]; then stack=current; shift; fi
venv=${1:-.venv38}
[ "$stack" = current ] && venv=${1:-.venv}

if [ "$stack" = graders ]; then
  pins="torch==1.11.0 torchvision==0.12.0 transformers==4.19.2"
  if python3.8 -c pass 2>/dev/null; then py=(python3.8)
  elif command -v pyenv >/dev/null && pyenv versions --bare | grep -x '3\.8\.18' >/dev/null; then
    py=(env PYENV_VERSION=3.8.18 pyenv exec python)
  else echo "error: the graders' stack needs Python 3.8 (python3.8 or pyenv 3.8.18)" >&2; exit 1
  fi
else
  pins="torch torchvision transformers"
  py=(python3)
fi

stamp="$venv/.bundle-stamp"
want="$stack $pins $(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv is up to date ($stack stack)"; exit 0
fi
[ -x "$venv/bin/python" ] || "${py[@]}" -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install -q --disable-pip-version-check $pins -r requirements-dev.txt
echo "$want" > "$stamp"
"$venv/bin/python" -c 'import sys, torch, torchvision; print("ready:", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__)'
