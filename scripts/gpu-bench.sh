#!/usr/bin/env bash
# The GPU performance measurements in one device call, from binaries built elsewhere (the GPU
# machine has no Go): `make build-cuda` here (bin/lorafleet-cuda, bin/COMMIT), send the tree
# with bin/, run this from the repository root. Builds nothing.
#
# 1. the PEFT baseline (bench/baselines/peft_generate.py: transformers + peft generate);
# 2. `lorafleet bench engine` on Llama-2-7B shapes, with the baseline beside it.
# Results go to $OUT/gpu-bench (engine.json, engine.md, peft.json); the table is printed last.
# Extra arguments go to bench engine (e.g. --steps 20 for a quicker run). The whole script
# stops within GPU_BENCH_SECONDS (default 540, under the device tool's 600-second calls):
# bench engine is then stopped by SIGTERM and writes what it has measured, targets first.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp}/gpu-bench
mkdir -p "$out"
cd "$root"
commit=$(cat bin/COMMIT 2>/dev/null || echo unknown)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

peft=()
# The baseline writes its JSON after each case: one stopped by its time limit keeps the rest.
PYTHONUNBUFFERED=1 timeout "${GPU_BENCH_PEFT_SECONDS:-300}" python3 bench/baselines/peft_generate.py --out "$out/peft.json" >"$out/peft.log" 2>&1 || {
	echo "PEFT baseline failed or was stopped (rc $?); last lines:"
	tail -5 "$out/peft.log"
}
[ -s "$out/peft.json" ] && peft=(--peft "$out/peft.json")
left=$(( ${GPU_BENCH_SECONDS:-540} - SECONDS ))
timeout -s TERM -k 30 "$left" bin/lorafleet-cuda bench engine --commit "$commit" --out "$out" "${peft[@]}" "$@" 2>"$out/engine.log"
rc=$?
[ $rc -eq 0 ] || tail -5 "$out/engine.log"
exit $rc
