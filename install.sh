#!/usr/bin/env bash
# Set up everything the workflow and the tests need, idempotently:
#   .venv/ with the exact versions of requirements.lock (installed with --no-deps: colossalai 0.5.0 declares
#   torch<=2.5.1 and would otherwise make pip fetch a multi-GB CUDA torch; torch==2.13.0 is the CPU build),
#   the project itself (editable), and the pinned raw data sources of data/sources.yaml in data/downloads/.
# Usage: bash install.sh            (re-running is cheap: it skips what is already in place)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${CPT_VENV:-.venv}

stamp_of() { cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.cpt-installed" 2>/dev/null)" != "$(stamp_of)" ]; then
  echo "installing requirements.lock into $VENV (a few minutes on a fresh machine)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade "pip==25.3"
  # torch first and alone: the CPU wheel; everything else exactly as locked, no resolver.
  "$VENV/bin/python" -m pip install --quiet "$(grep '^torch==' requirements.lock)"
  "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements.lock
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  "$VENV/bin/python" -m pip check >/dev/null 2>&1 || true   # colossalai's declared pins are knowingly unmet
  "$VENV/bin/python" -c "import torch, transformers, colossalai, snakemake, sentencepiece, datasets" 2>/dev/null
  stamp_of > "$VENV/.cpt-installed"
fi
"$VENV/bin/python" -m cpt.core.sources fetch >/dev/null
echo "install.sh: ready ($VENV)" >&2
