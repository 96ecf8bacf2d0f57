#!/usr/bin/env bash
# Generated from requirements.lock by `python -m cpt.workflow.software`; do not edit (a test compares).
# Snakemake runs this inside the new conda environment (workflow/envs/cpt.yaml).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python -m pip install --no-deps colossalai==0.5.0
python -m pip install --no-deps -e "$repo"
