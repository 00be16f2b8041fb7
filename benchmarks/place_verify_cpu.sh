#!/usr/bin/env bash
# `colobench place --verify` of a three-service placement on this CPU, with real engines: three
# `transformers serve` processes of a tiny checkpoint (random weights, a real tokenizer; built
# here, no download), profiled alone on one core each, placed on two one-core "devices" (a core
# set is the device a CPU server runs on), then the chosen placement and memory-only first fit's
# both run and measured against their predictions, then planned again from the fed-back profiles.
#
#     benchmarks/place_verify_cpu.sh [OUT_DIR] [CHECKPOINT]      # ~6 minutes on 2 cores
#
# Figures for docs/benchmarks.md; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/place-verify-cpu}
CKPT=${2:-$OUT/tiny-bpe}
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1
mkdir -p "$OUT"
[ -f "$CKPT/config.json" ] || python benchmarks/tiny_checkpoint.py "$CKPT"

server() {  # one managed transformers serve, pinned to core 0 for its solo profile
  echo "  - {name: ts-$1, command: [python, -c, \"from transformers.cli.transformers import main; main()\", serve, $CKPT, --device, cpu, --port, \"{port}\"], device: cpu, cpu_affinity: [0], ready_path: /health, ready_timeout_s: 300, env: {OMP_NUM_THREADS: \"1\"}}"
}
instance() {  # name, rate, prompt tokens, output tokens, SLO TPOT ms
  echo "  - {name: $1, backend: openai, server: ts-$1, model: $CKPT, api: chat, tokenizer: $CKPT, exact_output_fields: [], extra_body: {generation_config: '{\"min_new_tokens\": \$output_tokens, \"max_new_tokens\": \$output_tokens}'}, slo: {ttft_ms: 300, tpot_ms: $5}, workload: {rate: $2, prompt_tokens: $3, output_tokens: $4, arrival: poisson, duration_s: 30}}"
}
{
  echo "name: three-services"
  echo "repetitions: 2"
  echo "colocated: false"
  echo "servers:"; server chat; server code; server batch
  echo "instances:"
  instance chat 4 128 32 12
  instance code 3 64 64 12
  instance batch 8 32 16 12
} > "$OUT/profile.yaml"
rm -rf "$OUT/profiles-run" "$OUT/verify-best" "$OUT/verify-first-fit"
colobench run "$OUT/profile.yaml" -o "$OUT/profiles-run" > "$OUT/profile.log" 2>&1

cat > "$OUT/place.yaml" <<YAML
objective: min_devices
target: 0.95
devices: {name: core, count: 2, memory_gb: 4, cores: 1, accelerator: cpu}
verify: {duration_s: 30, repetitions: 2}
services:
  - {name: chat, profile: profiles-run/profiles/chat.profile.json, rate: 4, memory_gb: 1}
  - {name: code, profile: profiles-run/profiles/code.profile.json, rate: 3, memory_gb: 1}
  - {name: batch, profile: profiles-run/profiles/batch.profile.json, rate: 8, memory_gb: 1}
YAML
colobench place "$OUT/place.yaml" --verify -o "$OUT/verify-best" || true
colobench place "$OUT/place.yaml" --method memory_first_fit --verify -o "$OUT/verify-first-fit" || true
colobench place "$OUT/verify-best/placement.yaml"
