#!/usr/bin/env bash
# The accelerator check: one prepared run of at most ~8 minutes on a lent GPU (DEVELOPERS.md,
# "Accelerators"). From the repository root:
#
#   bash scripts/accelerator_check.sh [OUT_DIR]
#
# 1. the golden parity tests on the GPU;
# 2. official SVR inference at batch 1 and 256 (latency, images/s; scripts/efficiency.py);
# 3. train steps of svr, sima and mvr at the official width (Dex-YCB recipe), global batch 32
#    and 256, in float32 and in bfloat16 mixed precision (model.compute_dtype; parameters stay
#    float32), each with its compile time and images/s (scripts/bench_train_step.py).
#
# Results: OUT_DIR/train_steps.jsonl, OUT_DIR/inference.json, OUT_DIR/parity.log and a table on
# stdout. Each step is capped (STEP_TIMEOUT_S) and the whole script stops starting new work after
# BUDGET_S, so a slow compile cannot eat the lease; what did not run is printed as skipped.
# Python packages the machine lacks (ml-collections, tensorboardX, ...) travel as wheels in .whl/
# (DEVELOPERS.md says how to fetch them); they are installed into /tmp/site when present.
set -u
OUT_DIR=${1:-${OUT:-/tmp/accelerator_check}}
BUDGET_S=${BUDGET_S:-450}
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-90}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
# The benchmark scripts do not turn on the persistent compile cache: compile times are cold.
SECONDS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" || exit 1

echo "== parity tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_parity.py \
  >"$OUT_DIR/parity.log" 2>&1
echo "parity: exit $? ($(tail -1 "$OUT_DIR/parity.log"))"

echo "== inference (official SVR, batch 1 and 256)"
timeout 120 python3 scripts/efficiency.py --variant official --models svr --no-train \
  --batch 256 --latency-batch 1 --repeats 10 --json "$OUT_DIR/inference.json" \
  >"$OUT_DIR/inference.log" 2>&1 || echo "inference: failed or timed out (see inference.log)"
tail -4 "$OUT_DIR/inference.log"

echo "== train steps (official width, Dex-YCB recipe)"
for dtype in float32 bfloat16; do
  for batch in 256 32; do
    for stage in svr sima mvr; do
      if [ "$SECONDS" -gt "$BUDGET_S" ]; then
        echo "skipped (budget): $stage batch $batch $dtype"; continue
      fi
      timeout "$STEP_TIMEOUT_S" python3 scripts/bench_train_step.py --stage "$stage" \
        --variant official --config official --batch "$batch" --steps 10 \
        --compute-dtype "$dtype" --allocator glibc --json-line "$OUT_DIR/train_steps.jsonl" \
        2>>"$OUT_DIR/train_steps.err" | tail -1 || echo "failed: $stage batch $batch $dtype"
    done
  done
done

python3 - "$OUT_DIR/train_steps.jsonl" <<'EOF'
import json, sys
try:
  rows = [json.loads(line) for line in open(sys.argv[1])]
except FileNotFoundError:
  rows = []
print("| stage | batch | dtype | step (ms) | images/s | compile (s) |")
print("|---|---:|---|---:|---:|---:|")
for r in rows:
  print(f"| {r['stage']} | {r['batch']} | {r['compute_dtype']} | {r['median_ms']:.1f} | "
        f"{1e3 * r['batch'] / r['median_ms']:.0f} | {r['lower_s'] + r['compile_s']:.1f} |")
EOF
echo "total ${SECONDS} s"
