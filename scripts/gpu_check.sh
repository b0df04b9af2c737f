#!/bin/bash
# GRPO on this machine's GPUs with random-weight SmolLM2-135M and 1.5B Qwen2-style models (no download, no vLLM
# needed): s/step, tokens/s, MFU, peak memory; native vs hf engine, ddp vs fsdp at N GPUs. Under 8 minutes.
# Figures go to $OUT (when set) or results/gpu_check/gpu_check.json.  CPU dry run: scripts/gpu_check.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
timeout 470 "$PY" benchmarks/gpu_check.py --out "${OUT:-results/gpu_check}" "$@"
