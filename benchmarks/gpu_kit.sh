#!/usr/bin/env bash
# The GPU kit: every wheel the GPU image lacks for both training engines, gathered here (a machine that reaches the
# package registry: a developer's or CI's) for CPython 3.12 manylinux x86-64, in one folder under 64 MiB.
#
#   bash benchmarks/gpu_kit.sh OUTDIR            (a few minutes; OUTDIR is emptied first)
#
# What goes in, lane by lane, with the reasons: benchmarks/gpu_kit.txt; what the image already has:
# benchmarks/gpu_image.txt. Wheels come from the registry with `pip download --no-deps --only-binary=:all:` for the
# image's platform; packages that only publish an sdist (ColossalAI, contexttimer) are built here into pure-Python
# wheels (`pip wheel --no-deps --no-build-isolation`, ColossalAI with BUILD_EXT=0: its CUDA kernels are JIT-built on
# the GPU by gpu_check.sh's kernels step); bitsandbytes is repacked with only the CUDA 13.0 and CPU libraries.
# Also: real-model/config.json + stage.json (the SmolLM2 experiment's first training stage: architecture from its
# GGUF, expanded vocabulary, stage settings; its weights do not fit and are generated on the GPU),
# manifest.json (every file's name, version, sha256, size; the total), and the completeness check's report
# (check.json; the build fails if the kit is incomplete or over the limit).
# On the GPU machine: `bash benchmarks/gpu_check.sh --kit OUTDIR` installs it with
# `python3 -m pip install --no-index --no-deps --target` (the image's own python3 and torch stay as they are).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 1 ] || { sed -n '2,20p' "$0"; exit 2; }
OUT=$1
PY=${PYTHON:-.venv/bin/python}          # builds the sdists (needs setuptools) and runs gpu_kit.py
LIMIT_MIB=${GPU_KIT_LIMIT_MIB:-64}
REAL_CONFIG=${GPU_KIT_REAL_CONFIG:-config/smollm2-zh.yaml}
PLATFORMS=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64
           manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64)
START=$(date +%s)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PIP_DISABLE_PIP_VERSION_CHECK=1

rm -rf "$OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
plat=()
for p in "${PLATFORMS[@]}"; do plat+=(--platform "$p"); done

# lane name version options..., one line per wheel, comments dropped
while read -r lane req opts; do
  mkdir -p "$OUT/$lane"
  name=${req%%==*}
  if [[ " $opts " == *" sdist "* ]]; then
    envs=()
    for o in $opts; do [[ $o == env:* ]] && envs+=("${o#env:}"); done
    echo "+ build $req from its sdist ${envs[*]}" >&2
    "$PY" -m pip download --quiet --no-deps --no-binary=:all: -d "$WORK/sdist" "$req"
    sdist=$(ls "$WORK/sdist"/"${name}"-*.tar.gz "$WORK/sdist"/"${name//-/_}"-*.tar.gz 2>/dev/null | head -1)
    [ -n "$sdist" ] || { echo "gpu_kit.sh: no sdist of $req downloaded" >&2; exit 1; }
    env "${envs[@]}" "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT/$lane" "$sdist"
    rm -f "$sdist"
  else
    echo "+ download $req ($lane)" >&2
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      "${plat[@]}" -d "$OUT/$lane" "$req"
  fi
  for o in $opts; do
    if [[ $o == keep:* ]]; then
      whl=$(ls "$OUT/$lane"/"${name//-/_}"-*.whl "$OUT/$lane"/"${name}"-*.whl 2>/dev/null | head -1)
      echo "+ repack $(basename "$whl"): keep ${o#keep:}" >&2
      "$PY" benchmarks/gpu_kit.py repack "$whl" --keep "${o#keep:}" >"$WORK/repack-$name.json"
    fi
  done
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' benchmarks/gpu_kit.txt)

if [ -f "$REAL_CONFIG" ]; then
  echo "+ real-model shape and settings from $REAL_CONFIG" >&2
  "$PY" benchmarks/gpu_kit.py real-model "$OUT/real-model" --config "$REAL_CONFIG" >/dev/null
else
  echo "gpu_kit.sh: $REAL_CONFIG not found: no real-model entry (gpu_check.sh --kit will skip that step)" >&2
fi

echo "+ completeness check" >&2
CHECK=0
"$PY" benchmarks/gpu_kit.py check "$OUT" --json-out "$OUT/check.json" || CHECK=$?
SECONDS_TAKEN=$(( $(date +%s) - START ))
repacked=$(cat "$WORK"/repack-*.json 2>/dev/null | "$PY" -c 'import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin if l.strip()]))')
extra=$(printf '{"built_seconds": %s, "commit": "%s", "python": "3.12", "platform": "manylinux x86_64", "repacked": %s}' \
  "$SECONDS_TAKEN" "$(git rev-parse HEAD 2>/dev/null || echo unknown)" "${repacked:-[]}")
"$PY" benchmarks/gpu_kit.py manifest "$OUT" --limit-mib "$LIMIT_MIB" --extra-json "$extra"
if [ "$CHECK" != 0 ]; then
  echo "gpu_kit.sh: the kit is incomplete (see $OUT/check.json)" >&2
  exit 1
fi
echo "gpu_kit.sh: $OUT built in ${SECONDS_TAKEN} s" >&2
