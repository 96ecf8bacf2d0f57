#!/usr/bin/env bash
# The first check on a GPU machine: one CUDA GPU, under 8 minutes, one JSON.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--out DIR]
#
# 1. environment: GPU name, torch/CUDA versions, flash-attn and ColossalAI present;
# 2. ColossalAI's JIT kernels (CPU Adam + fused Adam, used by HybridAdam) built or loaded from the cache;
# 3. a 7B-shaped slice (vocabulary 69,104, hidden 4096, MLP 11008, 32 heads, 2 layers, sequence 4096, micro batch 1)
#    trained on random tokens with zero2 bf16 (gradient checkpointing on/off x flash-attn on/off) and gemini bf16
#    (gradient checkpointing on, flash-attn on): tokens/s/GPU, MFU against the device's dense bf16 peak, peak memory
#    (benchmarks/train_throughput.py, one fresh process per case, the model built once);
# 4. a few optimizer steps of the real-model experiment config/smollm2-zh.yaml on the GPU: its first training
#    stage's settings with zero2 bf16 on its base model (SmolLM2-135M, built by `snakemake --until model_base`),
#    on the stage's dataset when it exists, else on random tokens.
# Result: $OUT/gpu_check.json (+ one JSON per case, logs). Cases that would overrun the 8-minute budget are
# skipped and listed as skipped, never silently dropped.
#
# --dry-run (tested on CPU by tests/unit/test_gpu_check.py): runs nothing heavy; checks every command line the real
# run would execute: each training case is validated by train_throughput.py --dry-run (training keys + the plugin
# arguments a CUDA device would get), the kernel step lists what it would build, the real-model step plans the
# workflow with `snakemake -n`. Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
OUT=benchmarks/results/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-.venv/bin/python}
SMK=${SNAKEMAKE:-.venv/bin/snakemake}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}   # < 8 min in all
REAL_CONFIG=${GPU_CHECK_REAL_CONFIG:-config/smollm2-zh.yaml}   # the SmolLM2 experiment (another change adds it)
STEPS=${GPU_CHECK_STEPS:-env,kernels,slice,real}   # a subset, e.g. GPU_CHECK_STEPS=real
START=$(date +%s)
mkdir -p "$OUT"
FAILED=0
SKIPPED=()

wanted() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }

# step NAME MIN_SECONDS CMD... : run (or, in dry mode, check) one command; log to $OUT/NAME.log
step() {
  local name=$1 need=$2; shift 2
  if [ "$DRY" = 0 ] && [ "$(left)" -lt "$need" ]; then
    echo "skip $name: $(left) s left of the ${BUDGET_S} s budget, needs ~${need} s" >&2
    SKIPPED+=("$name")
    return 0
  fi
  echo "+ [$name] $*" >&2
  if "$@" >"$OUT/$name.log" 2>&1; then
    [ "$DRY" = 1 ] && sed 's/^/    /' "$OUT/$name.log" >&2
    return 0
  fi
  echo "FAILED $name (see $OUT/$name.log):" >&2
  tail -20 "$OUT/$name.log" >&2
  FAILED=1
  return 1
}

DRYFLAG=()
[ "$DRY" = 1 ] && DRYFLAG=(--dry-run)

# ---- 1. environment ------------------------------------------------------------------------------------------
wanted env && step env 5 "$PY" - "$OUT/env.json" "$DRY" <<'EOF'
import importlib.util, json, sys
import torch
out, dry = sys.argv[1], sys.argv[2] == "1"
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "flash_attn": importlib.util.find_spec("flash_attn") is not None,
        "colossalai": importlib.util.find_spec("colossalai") is not None}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, memory_gib=round(p.total_memory / 2**30, 1), devices=torch.cuda.device_count())
    from cpt.train.metrics import peak_flops_per_device
    peak = peak_flops_per_device(None, p.name)
    info["bf16_peak_tflops"] = peak / 1e12 if peak else None
elif not dry:
    sys.exit("no CUDA GPU visible: gpu_check.sh needs one (use --dry-run on CPU)")
json.dump(info, open(out, "w"), indent=2)
print(json.dumps(info))
EOF

# ---- 2. ColossalAI kernels -----------------------------------------------------------------------------------
wanted kernels && step kernels 30 "$PY" -m cpt.train.kernels --prebuild-kernels "${DRYFLAG[@]}"

# ---- 3. the 7B-shaped slice -------------------------------------------------------------------------------------
SLICE_MODEL="$OUT/slice-model"
SHAPE=(--vocab 69104 --hidden 4096 --intermediate 11008 --heads 32 --layers 2 --seq-len 4096 --micro-batch 1
       --steps 8 --precision bf16 --nproc 1)
CASES=(
  "zero2-gc-flash|--plugin zero2 --grad-checkpointing --flash-attention on"
  "zero2-gc-sdpa|--plugin zero2 --grad-checkpointing --flash-attention off"
  "zero2-nogc-flash|--plugin zero2 --flash-attention on"
  "zero2-nogc-sdpa|--plugin zero2 --flash-attention off"
  "gemini-gc-flash|--plugin gemini --grad-checkpointing --flash-attention on"
)
first=1
wanted slice || CASES=()
for case in "${CASES[@]+"${CASES[@]}"}"; do
  label=${case%%|*}
  read -r -a opts <<< "${case#*|}"
  model_opt=(--model "$SLICE_MODEL")
  if [ "$first" = 1 ] && [ ! -f "$SLICE_MODEL/config.json" ]; then
    model_opt=(--make-model "$SLICE_MODEL" --model-dtype bf16)   # built once (~1 B parameters, 2 GB)
  fi
  first=0
  step "$label" 60 "$PY" benchmarks/train_throughput.py --label "$label" "${SHAPE[@]}" "${opts[@]}" \
    "${model_opt[@]}" --timeout 150 --json-out "$OUT/$label.json" "${DRYFLAG[@]}"
done

# ---- 4. the real model: a few steps of config/smollm2-zh.yaml's first training stage on the GPU -------------------
if ! wanted real; then
  :
elif [ ! -f "$REAL_CONFIG" ]; then
  echo "skip real-model: $REAL_CONFIG is not in this checkout (the SmolLM2 experiment config); add it to run this step" >&2
  SKIPPED+=("real-model (no $REAL_CONFIG)")
else
  # paths and settings of the experiment's first training stage, from the config itself
  read -r REAL_MODEL REAL_DATA REAL_SEQ REAL_SETS < <("$PY" - "$REAL_CONFIG" <<'EOF'
import sys, yaml
from cpt.artifacts.layout import Layout
cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
lay = Layout(cfg)
stages = cfg["train"]["stages"]
first = next(iter(stages))
section = {**cfg["train"].get("defaults", {}), **stages[first]}
keep = {k: v for k, v in section.items() if k in ("lr", "warmup_steps", "max_length", "micro_batch_size",
                                                     "freeze_non_embeds", "seed")}
sets = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in keep.items())
print(lay.model_base, lay.dataset(first), section.get("max_length", 1024), sets or "-")
EOF
  )
  if [ "$DRY" = 1 ]; then
    step real-model-plan 5 "$SMK" -n --quiet rules --cores 1 --configfile "$REAL_CONFIG" --until model_base
  else
    step real-model-base 90 "$SMK" --cores all --configfile "$REAL_CONFIG" --until model_base
  fi
  real_sets=()
  IFS=',' read -r -a kv <<< "$REAL_SETS"
  for x in "${kv[@]}"; do [ "$x" != "-" ] && real_sets+=(--set "$x"); done
  if [ -f "$REAL_DATA/manifest.json" ]; then
    data_opt=(--dataset "$REAL_DATA" --set max_steps=5 --set save_interval=1000)
  else
    data_opt=(--benchmark-seq-len "$REAL_SEQ" --benchmark-steps 5)
  fi
  real_cmd=("$PY" -m cpt.train --model "$REAL_MODEL" --output "$OUT/real-model" "${data_opt[@]}" --no-progress
            "${real_sets[@]}" --set plugin=zero2 --set precision=bf16 --set flash_attention=true
            --set tensorboard=false)
  if [ "$DRY" = 1 ]; then
    step real-model 5 "$PY" - "${real_cmd[@]:1}" <<'EOF'
import sys
from cpt.train.config import load_config
from cpt.train.plugins import plugin_spec
args = sys.argv[1:]
cfg = load_config(None, [args[i + 1] for i, a in enumerate(args) if a == "--set"])
print("ok:", *plugin_spec(cfg, "cuda"))
print("+ python", *args)
EOF
  else
    rm -rf "$OUT/real-model"
    step real-model 60 timeout 120 "${real_cmd[@]}"
  fi
fi

# ---- result ---------------------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  if [ "$FAILED" = 0 ]; then echo "gpu_check.sh --dry-run: every command line checked" >&2; fi
  exit "$FAILED"
fi
"$PY" - "$OUT" "$(elapsed)" "${SKIPPED[@]+"${SKIPPED[@]}"}" <<'EOF'
import json, sys
from pathlib import Path
out, seconds, skipped = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
doc = {"env": json.loads((out / "env.json").read_text()) if (out / "env.json").is_file() else None,
       "wall_seconds": seconds, "skipped": skipped, "runs": []}
for f in sorted(out.glob("*.json")):
    if f.name not in ("env.json", "gpu_check.json"):
        doc["runs"].append(json.loads(f.read_text()))
real = out / "real-model" / "metrics.jsonl"
bench = out / "real-model" / "benchmark.json"
if real.is_file():
    doc["real_model"] = [json.loads(x) for x in real.read_text().splitlines()]
elif bench.is_file():
    doc["real_model"] = json.loads(bench.read_text())
(out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out / 'gpu_check.json'} ({len(doc['runs'])} runs, {seconds} s, skipped: {skipped or 'none'})")
EOF
"$PY" benchmarks/train_throughput.py merge "$OUT"/zero2-*.json "$OUT"/gemini-*.json --json-out "$OUT/slice.json" || true
exit "$FAILED"
