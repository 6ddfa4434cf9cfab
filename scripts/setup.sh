#!/usr/bin/env bash
# Idempotent set-up: creates .venv, installs torch first (keeping a compatible one that is
# already there, e.g. a CUDA build), then the project under constraints. Takes seconds when
# nothing changed (a stamp holds the hash of everything that decides the install).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RCD_VENV:-.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_CPU_VERSION="2.13.0"

want="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.rcd-setup-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/rcd" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  # RCD_SYSTEM_SITE=1 lets the venv see a torch (e.g. CUDA) installed in the base Python.
  "$PYTHON" -m venv ${RCD_SYSTEM_SITE:+--system-site-packages} "$VENV"
fi
PY="$VENV/bin/python"
pip_q() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# Keep any torch >= 2.13 already importable from the venv (CUDA builds included).
have_torch="$("$PY" - <<'PY' 2>/dev/null || true
import torch
major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
print(torch.__version__ if (major, minor) >= (2, 13) else "")
PY
)"
# uv (from the package registry) installs in seconds what pip takes minutes over; pip is the
# fallback when uv cannot be had.
have_uv() { [ -x "$VENV/bin/uv" ] || pip_q uv; "$VENV/bin/uv" --version >/dev/null 2>&1; }

# The CPU wheel of torch where pip's find-links hold it (uv reads no pip.conf): uv installs the
# file in about 2 s where pip unpacks and byte-compiles it in about 27 s.
local_torch_wheel() {
  local dirs tag
  dirs="${PIP_FIND_LINKS:-$("$PY" -m pip config get global.find-links 2>/dev/null || true)}"
  tag="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  for d in $dirs; do
    ls "${d#file://}"/torch-"$TORCH_CPU_VERSION"+cpu-"$tag"-"$tag"-*linux*x86_64.whl 2>/dev/null | head -1
  done | head -1
}

if [ -z "$have_torch" ]; then
  echo "setup: installing torch==$TORCH_CPU_VERSION (CPU wheel) into $VENV"
  wheel="$(local_torch_wheel)"
  if [ -n "$wheel" ] && have_uv; then
    "$VENV/bin/uv" pip install --quiet --python "$PY" "$wheel"
  else
    pip_q "torch==$TORCH_CPU_VERSION"
  fi
  have_torch="$("$PY" -c 'import torch; print(torch.__version__)')"
else
  echo "setup: keeping torch $have_torch"
fi

pins="$VENV/.rcd-constraints.txt"
cp constraints.txt "$pins"
echo "torch==${have_torch}" >> "$pins"
case "$have_torch" in 2.13.*) echo "torchvision==0.28.0" >> "$pins" ;; esac

echo "setup: installing rcdistill and its dependencies (first time: under a minute with uv)"
# uv resolves and installs the ~200 dependencies in seconds where pip takes about two minutes;
# it keeps the torch installed above, which the pins name.
if have_uv; then
  "$VENV/bin/uv" pip install --quiet --python "$PY" -c "$pins" -e ".[dev]"
else
  echo "setup: uv unavailable, installing with pip (a few minutes)"
  pip_q -c "$pins" -e ".[dev]"
fi
echo "$want" > "$stamp"
echo "setup: ready ($VENV, torch $have_torch)"
