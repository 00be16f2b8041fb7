#!/usr/bin/env bash
# Every GPU figure docs/benchmarks.md is missing, on a CUDA machine, in under 12 minutes (each step
# has a time cap, and the caps add up to 12 minutes):
#   copy bandwidth and matmul rate (devices --probe); MBU of the llama-3.2-1b preset at batch 1
#   and 8, eager and compiled, with NVML GPM's measured DRAM bandwidth beside the modelled one;
#   the int8 / bf16 ratio with its quality check (when optimum-quanto is importable); a
#   co-located pair on one card with scaling and energy per token; co-location predicted from solo
#   profiles (device probes) against three measured pairs (benchmarks/predict.py --part device).
# Runs from the source tree (PYTHONPATH=src); optional dependencies stay optional.
#   benchmarks/gpu.sh                         # cuda:0, llama-3.2-1b
#   DEVICE=cpu MODEL=tiny benchmarks/gpu.sh   # the same steps on a CPU (checks the script itself)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda:0}
MODEL=${MODEL:-llama-3.2-1b}
DTYPE=${DTYPE:-bfloat16}
OUT=${OUT:-/tmp/colobench-gpu}
export COLOBENCH_CACHE=${COLOBENCH_CACHE:-$OUT/cache}
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== $1 (t+$(( $(date +%s) - start )) s)"; }
run() {  # a run bounded in time (Ctrl-C at the limit: what completed is kept and summarised)
  local limit=$1; shift
  timeout -s INT -k 20 "$limit" "$PY" -m colobench run "$@" > "$OUT/$(basename "${@: -1}").log" 2>&1
  local rc=$?
  [ $rc -le 1 ] || echo "   (exit $rc; see $OUT/$(basename "${@: -1}").log)"
  tail -n 25 "$OUT/$(basename "${@: -1}").log" | grep -v '^{' | tail -n 12
}

step "environment"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
"$PY" -c "import pynvml; pynvml.nvmlInit(); print('nvml', pynvml.nvmlSystemGetDriverVersion())" 2>/dev/null || echo "nvml: not importable"

step "devices --probe (copy bandwidth, matmul)"
timeout 30 "$PY" -m colobench devices --probe | grep -v '^{'

step "preset $MODEL (random weights, built once into \$COLOBENCH_CACHE)"
timeout 90 "$PY" -c "import sys; from pathlib import Path; from colobench.models.presets import ensure_preset; print(ensure_preset(sys.argv[1], Path(sys.argv[2])))" "$MODEL" "$COLOBENCH_CACHE" || echo "   (preset build failed or timed out)"

common=(-m "$MODEL" -d "$DEVICE" --dtype "$DTYPE" -p 128 -n 64 --repetitions 3)
step "MBU: batch 1 and 8, eager (solo)"
run 80 "${common[@]}" -b 1,8 --graph eager -r 6 -o "$OUT/eager"
step "MBU: batch 1 and 8, compiled (static KV cache + torch.compile; compilation is warm-up)"
run 150 "${common[@]}" -b 1,8 --graph compiled -r 6 -o "$OUT/compiled"

if "$PY" -c "import optimum.quanto" 2>/dev/null; then
  step "int8 against $DTYPE (weight-only, optimum-quanto), with the quality check"
  run 60 "${common[@]}" -b 8 --quantization none,int8 -r 4 -o "$OUT/int8"
  INT8="$OUT/int8"
else
  step "int8: skipped (optimum-quanto is not importable here; carry its wheel to measure it)"
  INT8=""
fi

step "co-located pair on one card: scaling and energy per token"
run 70 -m "$MODEL" -m "$MODEL" -d "$DEVICE" --dtype "$DTYPE" -p 128 -n 64 -b 8 -r 6 --repetitions 5 -o "$OUT/pair"

step "co-location predicted from solo profiles: qwen2.5-0.5b and $MODEL beside device probes, 3 pairs measured"
timeout -s INT -k 20 240 "$PY" benchmarks/predict.py --part device --device "$DEVICE" \
  --presets qwen2.5-0.5b "$MODEL" qwen2.5-0.5b --reps 3 --cpu-requests 4 --aa 1 --out "$OUT/predict" \
  > "$OUT/predict.log" 2>&1 || echo "   (exit $?; see $OUT/predict.log)"
grep -A 6 "predicted from solo profiles" "$OUT/predict.log" | head -n 8

step "figures (markdown rows for docs/benchmarks.md)"
"$PY" benchmarks/gpu_figures.py "$OUT/eager" "$OUT/compiled" ${INT8:+"$INT8"} "$OUT/pair"
echo "total: $(( $(date +%s) - start )) s"
