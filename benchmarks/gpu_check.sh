#!/usr/bin/env bash
# The first check on a GPU machine: one CUDA GPU, under 8 minutes, one JSON ($OUT/gpu_check.json).
#
#   bash benchmarks/gpu_check.sh [--kit DIR] [--dry-run] [--out DIR]
#
# --kit DIR   the machine is a bare GPU image (Python 3.12, torch, transformers 5.x, no ColossalAI, no network):
#             install the kit built by benchmarks/gpu_kit.sh with the image's own python3
#             (`pip install --no-index --no-deps --target`, one folder per lane; the image's torch is never replaced)
#             and run each engine with its lanes first on PYTHONPATH: ColossalAI with transformers 4.51.3 (its
#             shardformer needs it), the torch engine with the image's transformers. Without --kit the current
#             Python environment is used (a GPU node set up per docs/hpc.md: .venv with everything installed).
#
# Steps (each logged to $OUT/<step>.log; a step that would overrun the budget is skipped and listed, never dropped):
# 1. env: GPU, torch/CUDA, flash-attn, per engine which transformers / ColossalAI; with --kit the image's installed
#    distributions against benchmarks/gpu_image.txt; torch-api: every torch name the project uses, imported from
#    this torch (benchmarks/gpu_kit.py torch-api resolve; the image's torch is 2.11).
# 2. a 7B-shaped slice (vocabulary 69,104, hidden 4096, MLP 11008, 32 heads, 2 layers, sequence 4096, micro batch 1,
#    8 steps, bf16, random tokens, one GPU), one fresh process per case (benchmarks/train_throughput.py):
#    torch engine (FSDP2, `--set engine=torch`; "not available" while this checkout's cpt has no train.engine) and
#    ColossalAI zero2 (after its JIT kernels are built), gradient checkpointing on/off, SDPA, then flash-attn
#    (flash cases report "not available" where flash_attn is not installed: train.flash_attention would fall back to
#    SDPA, which the sdpa cases measure). tokens/s per GPU, MFU against the device's dense bf16 peak, peak memory.
# 3. the real-model experiment (config/smollm2-zh.yaml): five steps of its first training stage's settings on
#    SmolLM2-135M (extended vocabulary), both engines. With --kit: the model's shape from the kit (its weights do not
#    fit in 64 MiB; random weights of that shape); without: the dequantized base model (`snakemake --until
#    model_base`) on the stage's dataset when it exists.
# Result: $OUT/gpu_check.json: env, image, torch_api, engines, cases (status ok / not available / failed / skipped,
# with the figures), real_model, wall_seconds.
#
# --dry-run (tests/unit/test_gpu_check.py, on CPU): runs nothing heavy and measures nothing; checks every command
# line: each training case is validated by train_throughput.py --dry-run (training keys + the plugin a CUDA device
# would get), the engine probe reports the torch engine's availability, the kernel step lists what it would build;
# with --kit it installs the kit for real into $GPU_CHECK_SCRATCH/site (cross-installed for CPython 3.12 x86-64)
# and runs the kit's completeness check, and validates the command lines in the current environment (the kit's CPython 3.12
# binaries load on no other Python). Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DRY=0
KIT=
OUT=benchmarks/results/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --kit) KIT="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$KIT" ]; then
  KIT=$(cd "$KIT" && pwd) || { echo "gpu_check.sh: --kit $KIT: no such folder" >&2; exit 2; }
  PY=${PYTHON:-python3}          # the image's own python3 (and its torch)
else
  PY=${PYTHON:-.venv/bin/python}
fi
SMK=${SNAKEMAKE:-.venv/bin/snakemake}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# big things out of the repository: the installed kit (~200 MB) and the generated models (the slice: 2 GB)
SCRATCH=${GPU_CHECK_SCRATCH:-${TMPDIR:-/tmp}/cpt-gpu-check}
SITE=$SCRATCH/site
mkdir -p "$SCRATCH"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_DATASETS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}   # < 8 min in all
REAL_CONFIG=${GPU_CHECK_REAL_CONFIG:-config/smollm2-zh.yaml}
STEPS=${GPU_CHECK_STEPS:-env,slice,real}   # a subset, e.g. GPU_CHECK_STEPS=real
# how cpt's train entry selects PyTorch's own engine, and its ZeRO-2 analogue (FSDP2 without resharding after
# forward); whoever adds the engine adjusts these two if it names them otherwise
TORCH_ENGINE_SETS=${GPU_CHECK_TORCH_SETS:-engine=torch plugin=zero2}
START=$(date +%s)
mkdir -p "$OUT/cases"
FAILED=0
SKIPPED=()

# PYTHONPATH of each engine's processes: its kit lanes (first wins), then the checkout's src
# (a dry run validates in the current environment: the kit's CPython 3.12 binaries load on no other Python)
if [ -n "$KIT" ] && [ "$DRY" = 0 ]; then
  PP_colossalai="$SITE/hf451:$SITE/colossalai:$SITE/common:$REPO/src"
  PP_torch="$SITE/common:$REPO/src"
else
  PP_colossalai="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
  PP_torch="$PP_colossalai"
fi
export PYTHONPATH="$PP_colossalai"

wanted() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }

# note LABEL ENGINE STATUS REASON: a case that did not produce figures, in the JSON all the same
note() {
  "$PY" - "$OUT/cases/$1.json" "$1" "$2" "$3" "$4" <<'EOF'
import json, sys
path, label, engine, status, reason = sys.argv[1:]
json.dump({"label": label, "engine": engine, "status": status, "reason": reason}, open(path, "w"), indent=2)
EOF
  echo "$3 $1: $4" >&2
}

# step NAME MIN_SECONDS CMD... : run (or, in dry mode, check) one command; log to $OUT/NAME.log
step() {
  local name=$1 need=$2; shift 2
  if [ "$DRY" = 0 ] && [ "$(left)" -lt "$need" ]; then
    echo "skip $name: $(left) s left of the ${BUDGET_S} s budget, needs ~${need} s" >&2
    SKIPPED+=("$name")
    return 3
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

# ---- 0. the kit -------------------------------------------------------------------------------------------------
if [ -n "$KIT" ]; then
  install_kit() {
    local cross=()
    # on CPU (dry run) the wheels are for another Python: pip installs them for CPython 3.12 x86-64 all the same
    [ "$DRY" = 1 ] && cross=(--python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64
                             --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64
                             --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64)
    "$PY" - "$KIT" <<'EOF' || return 1
import hashlib, json, sys
from pathlib import Path
kit = Path(sys.argv[1])
doc = json.loads((kit / "manifest.json").read_text())
bad = [f["path"] for f in doc["files"]
       if hashlib.sha256((kit / f["path"]).read_bytes()).hexdigest() != f["sha256"]]
if bad:
    sys.exit(f"kit files differ from manifest.json: {bad}")
print(f"kit: {doc['wheels']} wheels, {doc['total_mib']} MiB, commit {doc.get('commit')}, sha256 verified")
EOF
    rm -rf "$SITE"
    for lane in common colossalai hf451; do
      [ -d "$KIT/$lane" ] || { echo "kit has no lane $lane" >&2; return 1; }
      "$PY" -m pip install --quiet --no-index --no-deps "${cross[@]}" --target "$SITE/$lane" "$KIT/$lane"/*.whl \
        || return 1
      echo "installed $(ls "$KIT/$lane"/*.whl | wc -l) wheels into $SITE/$lane"
    done
  }
  step kit-install 60 install_kit || { echo "gpu_check.sh: the kit did not install; nothing else can run" >&2; exit 1; }
  if [ "$DRY" = 1 ]; then
    step kit-check 10 "$PY" benchmarks/gpu_kit.py check "$KIT" --json-out "$OUT/kit-check.json"
  fi
fi

# ---- 1. environment ---------------------------------------------------------------------------------------------
env_json() {  # env_json ENGINE: what the engine's processes import
  PYTHONPATH="$1" "$PY" - "$OUT/env-$2.json" "$DRY" "$2" <<'EOF'
import importlib.util, json, sys
import torch
out, dry, engine = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
def version(mod):
    if importlib.util.find_spec(mod) is None:
        return None
    m = __import__(mod)
    return getattr(m, "__version__", "present")
info = {"engine": engine, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "python": sys.version.split()[0],
        "transformers": version("transformers"), "colossalai": version("colossalai"),
        "flash_attn": importlib.util.find_spec("flash_attn") is not None, "datasets": version("datasets")}
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
}
image_json() {  # the image's own distributions (no kit on the path) against benchmarks/gpu_image.txt
  PYTHONPATH= "$PY" - "$OUT/image.json" <<'EOF'
import importlib.metadata as md, json, re, sys
sys.path.insert(0, "benchmarks")
from gpu_kit import norm, read_image_list
have = {norm(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}
listed = read_image_list()
missing = sorted(n for n, p in listed.items() if n != "python" and n not in have)
differ = {n: {"listed": p.version, "found": have[n]} for n, p in listed.items()
          if n in have and p.version and have[n].split("+")[0] != p.version}
doc = {"python": sys.version.split()[0], "distributions": dict(sorted(have.items())),
       "listed_but_missing": missing, "version_differs": differ}
json.dump(doc, open(sys.argv[1], "w"), indent=2)
print(json.dumps({k: doc[k] for k in ("python", "listed_but_missing", "version_differs")}))
EOF
}
if wanted env; then
  step env 5 env_json "$PP_colossalai" colossalai
  [ -n "$KIT" ] && step env-torch 5 env_json "$PP_torch" torch
  [ -n "$KIT" ] && [ "$DRY" = 0 ] && step image 5 image_json
  api_cmd=("$PY" benchmarks/gpu_kit.py torch-api resolve --json-out "$OUT/torch-api.json")
  step torch-api 5 "${api_cmd[@]}"
fi

# ---- the torch engine: present in this checkout? -----------------------------------------------------------------
TORCH_ENGINE_REASON=
probe_torch_engine() {
  PYTHONPATH="$PP_torch" "$PY" - $TORCH_ENGINE_SETS <<'EOF'
import sys
from cpt.core.errors import CptError
from cpt.train.config import load_config
try:
    cfg = load_config(None, sys.argv[1:])
except CptError as exc:
    why = " ".join(str(exc).split())
    print(f"not available: this checkout's cpt.train does not accept {' '.join(sys.argv[1:])} ({why})")
    sys.exit(3)
print("available:", *sys.argv[1:])
EOF
}
TORCH_PROBE=$(probe_torch_engine 2>&1)
rc=$?
echo "torch engine: $TORCH_PROBE" >&2
if [ $rc = 3 ]; then
  TORCH_ENGINE_REASON=${TORCH_PROBE#not available: }
elif [ $rc != 0 ]; then
  TORCH_ENGINE_REASON="the engine probe failed: $(echo "$TORCH_PROBE" | tail -1)"
  FAILED=1
fi
"$PY" - "$OUT/torch-engine.json" "$TORCH_ENGINE_REASON" "$TORCH_ENGINE_SETS" <<'EOF'
import json, sys
path, reason, sets = sys.argv[1:]
json.dump({"available": not reason, "sets": sets.split(), "reason": reason or None}, open(path, "w"), indent=2)
EOF

# ---- 2. the 7B-shaped slice -------------------------------------------------------------------------------------
SLICE_MODEL="$SCRATCH/slice-model"
SHAPE=(--vocab 69104 --hidden 4096 --intermediate 11008 --heads 32 --layers 2 --seq-len 4096 --micro-batch 1
       --steps 8 --precision bf16 --nproc 1)
torch_sets=()
for kv in $TORCH_ENGINE_SETS; do torch_sets+=(--set "$kv"); done
# label|engine|options   (sdpa first: flash cases come last so that a short budget drops them first)
CASES=(
  "torch-fsdp2-gc-sdpa|torch|--grad-checkpointing --flash-attention off"
  "torch-fsdp2-nogc-sdpa|torch|--flash-attention off"
  "colossalai-zero2-gc-sdpa|colossalai|--plugin zero2 --grad-checkpointing --flash-attention off"
  "colossalai-zero2-nogc-sdpa|colossalai|--plugin zero2 --flash-attention off"
  "torch-fsdp2-gc-flash|torch|--grad-checkpointing --flash-attention on"
  "torch-fsdp2-nogc-flash|torch|--flash-attention on"
  "colossalai-zero2-gc-flash|colossalai|--plugin zero2 --grad-checkpointing --flash-attention on"
  "colossalai-zero2-nogc-flash|colossalai|--plugin zero2 --flash-attention on"
)
flash_present() { PYTHONPATH="$1" "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("flash_attn") is None)'; }
KERNELS_DONE=0
kernels() {  # ColossalAI's JIT kernels (CPU Adam + fused Adam, HybridAdam's), once, before its first case
  [ "$KERNELS_DONE" = 1 ] && return 0
  KERNELS_DONE=1
  PYTHONPATH="$PP_colossalai" step kernels 60 timeout "${GPU_CHECK_KERNELS_TIMEOUT_S:-240}" \
    "$PY" -m cpt.train.kernels --prebuild-kernels "${DRYFLAG[@]}"
}
model_built=0
run_case() {  # run_case LABEL ENGINE OPTIONS...
  local label=$1 engine=$2; shift 2
  local opts=("$@") extra=() pp
  if [ "$engine" = torch ]; then
    pp=$PP_torch
    if [ -n "$TORCH_ENGINE_REASON" ]; then note "$label" torch "not available" "$TORCH_ENGINE_REASON"; return 0; fi
    extra=(--engine torch "${torch_sets[@]}")
  else
    pp=$PP_colossalai
    kernels
  fi
  if [[ " ${opts[*]} " == *" --flash-attention on "* ]] && [ "$DRY" = 0 ] && ! flash_present "$pp"; then
    note "$label" "$engine" "not available" "flash_attn is not installed (not in the image; its wheels are built \
per torch and CUDA, far over the kit's 64 MiB): train.flash_attention=true would run SDPA, measured by the sdpa case"
    return 0
  fi
  local model_opt=(--model "$SLICE_MODEL")
  if [ "$model_built" = 0 ] && [ ! -f "$SLICE_MODEL/config.json" ]; then
    model_opt=(--make-model "$SLICE_MODEL" --model-dtype bf16)   # built once (~1 B parameters, 2 GB)
  fi
  model_built=1
  PYTHONPATH="$pp" step "$label" 60 "$PY" benchmarks/train_throughput.py --label "$label" "${SHAPE[@]}" \
    "${extra[@]}" "${opts[@]}" "${model_opt[@]}" --timeout 150 --json-out "$OUT/cases/$label.json" "${DRYFLAG[@]}"
  local rc=$?
  if [ $rc = 3 ]; then note "$label" "$engine" skipped "budget: $(left) s left"
  elif [ $rc != 0 ] && [ "$DRY" = 0 ]; then note "$label" "$engine" failed "exit $rc; see $label.log: $(tail -1 "$OUT/$label.log")"
  fi
  return 0
}
if wanted slice; then
  for case in "${CASES[@]}"; do
    IFS='|' read -r label engine optstr <<< "$case"
    read -r -a opts <<< "$optstr"
    run_case "$label" "$engine" "${opts[@]}"
  done
fi

# ---- 3. the real model ------------------------------------------------------------------------------------------
real_with_kit() {  # five steps of the experiment's first stage, shape from the kit, both engines
  local shape="$KIT/real-model/config.json"
  if [ ! -f "$shape" ]; then
    echo "skip real-model: the kit has no real-model/config.json" >&2; SKIPPED+=("real-model (not in the kit)"); return
  fi
  local sets
  sets=$("$PY" - "$KIT/real-model/stage.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["settings"]
print(" ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in s.items()
               if k not in ("max_length", "micro_batch_size")), s.get("max_length", 512), s.get("micro_batch_size", 1))
EOF
  ) || { FAILED=1; return; }
  local mb=${sets##* }; sets=${sets% *}; local seq=${sets##* }; sets=${sets% *}
  [ "$DRY" = 0 ] && rm -rf "$SCRATCH/real-model"   # never a model of an earlier kit's shape
  read -r -a setv <<< "$sets"
  for engine in torch colossalai; do
    local label=real-$engine pp=$PP_colossalai extra=(--plugin zero2)
    if [ "$engine" = torch ]; then
      pp=$PP_torch; extra=(--engine torch "${torch_sets[@]}")
      if [ -n "$TORCH_ENGINE_REASON" ]; then note "$label" torch "not available" "$TORCH_ENGINE_REASON"; continue; fi
    else
      kernels
    fi
    local model_opt=(--model "$SCRATCH/real-model")   # built from the kit's config by the first case that runs
    [ -f "$SCRATCH/real-model/config.json" ] || \
      model_opt=(--model-config "$shape" --make-model "$SCRATCH/real-model" --model-dtype bf16)
    PYTHONPATH="$pp" step "$label" 45 "$PY" benchmarks/train_throughput.py --label "$label" --precision bf16 \
      --seq-len "$seq" --micro-batch "$mb" --steps 5 --nproc 1 --flash-attention on "${extra[@]}" "${setv[@]}" \
      "${model_opt[@]}" --timeout 120 --json-out "$OUT/cases/$label.json" "${DRYFLAG[@]}"
    local rc=$?
    if [ $rc = 3 ]; then note "$label" "$engine" skipped "budget"
    elif [ $rc != 0 ] && [ "$DRY" = 0 ]; then note "$label" "$engine" failed "exit $rc; see $label.log"
    fi
  done
}
real_with_workflow() {  # the project's own pipeline builds the real base model (a GPU node with snakemake)
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
    kernels
    step real-model 60 timeout 120 "${real_cmd[@]}"
  fi
}
if ! wanted real; then
  :
elif [ -n "$KIT" ]; then
  real_with_kit
elif [ ! -f "$REAL_CONFIG" ]; then
  echo "skip real-model: $REAL_CONFIG is not in this checkout (the SmolLM2 experiment config); add it to run this step" >&2
  SKIPPED+=("real-model (no $REAL_CONFIG)")
else
  real_with_workflow
fi

# ---- result -----------------------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  if [ "$FAILED" = 0 ]; then echo "gpu_check.sh --dry-run: every command line checked" >&2; fi
  exit "$FAILED"
fi
"$PY" - "$OUT" "$(elapsed)" "${KIT:-}" "${SKIPPED[@]+"${SKIPPED[@]}"}" <<'EOF'
import json, sys, time
from pathlib import Path
out, seconds, kit, skipped = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def load(p):
    return json.loads(p.read_text()) if p.is_file() else None
doc = {"schema": "gpu_check/2", "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "wall_seconds": seconds,
       "env": {e: load(out / f"env-{e}.json") for e in ("colossalai", "torch")},
       "image": load(out / "image.json"), "torch_api": load(out / "torch-api.json"),
       "torch_engine": load(out / "torch-engine.json"), "skipped": skipped, "cases": [], "real_model": []}
if kit:
    m = load(Path(kit) / "manifest.json") or {}
    doc["kit"] = {k: m.get(k) for k in ("total_mib", "wheels", "commit", "built_seconds")}
    if doc["image"]:  # the image list is data: keep only what disagrees with it, not every distribution
        doc["image"].pop("distributions", None)
for f in sorted((out / "cases").glob("*.json")):
    r = json.loads(f.read_text())
    r.setdefault("status", "ok")
    r.setdefault("engine", "torch" if r.get("label", "").startswith(("torch", "real-torch")) else "colossalai")
    (doc["real_model"] if r.get("label", "").startswith("real-") else doc["cases"]).append(r)
real = out / "real-model" / "metrics.jsonl"
if not kit and real.is_file():
    doc["real_model"].append({"label": "real-colossalai", "engine": "colossalai", "status": "ok",
                              "metrics": [json.loads(x) for x in real.read_text().splitlines()]})
elif not kit and (out / "real-model" / "benchmark.json").is_file():
    doc["real_model"].append({"label": "real-colossalai", "engine": "colossalai", "status": "ok",
                              **load(out / "real-model" / "benchmark.json")})
(out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
ok = sum(r["status"] == "ok" for r in doc["cases"] + doc["real_model"])
print(f"wrote {out / 'gpu_check.json'} ({ok} cases with figures, {seconds} s, skipped: {skipped or 'none'})")
EOF
"$PY" benchmarks/train_throughput.py merge "$OUT"/cases/*.json --json-out "$OUT/slice.json" || true
exit "$FAILED"
