#!/usr/bin/env bash
# The GPU performance measurements in one device call, from binaries built elsewhere (the GPU
# machine has no Go): `make build-cuda` here (bin/lorafleet-cuda, bin/COMMIT), send the tree
# with bin/, run this from the repository root. Builds nothing.
#
# 1. `lorafleet bench engine` on Llama-2-7B shapes (within GPU_BENCH_ENGINE_SECONDS, default
#    240: then stopped by SIGTERM, it writes what it has measured);
# 2. the PEFT baseline (bench/baselines/peft_generate.py: transformers + peft generate) in the
#    time left of GPU_BENCH_SECONDS (default 540, under the device tool's 600-second calls); it
#    writes its JSON after each case, so one stopped by the limit keeps the cases it finished
#    (GPU_BENCH_PEFT=0 skips it: a session comparing kernel variants, whose ratios to PEFT
#    need a later run with it, gets the ~250 s back);
# 3. the engine's report again with the baseline beside it (bench engine --report).
# Results go to $OUT/gpu-bench (engine.json, engine.md, peft.json); the table is printed last.
# Extra arguments go to bench engine (e.g. --steps 20 for a quicker run).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp}/gpu-bench
mkdir -p "$out"
cd "$root"
commit=$(cat bin/COMMIT 2>/dev/null || echo unknown)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

cuda=${LORAFLEET_CUDA_BIN:-bin/lorafleet-cuda} # another binary for scripts/gpu-dry-run.sh
timeout -s TERM -k 30 "${GPU_BENCH_ENGINE_SECONDS:-240}" "$cuda" bench engine --commit "$commit" --out "$out" "$@" \
	>/dev/null 2>"$out/engine.log"
rc=$?
[ $rc -eq 0 ] || { echo "bench engine: rc $rc; last lines:"; tail -5 "$out/engine.log"; }

left=$(( ${GPU_BENCH_SECONDS:-540} - SECONDS - 10 ))
if [ "${GPU_BENCH_PEFT:-1}" = 0 ]; then
	echo "PEFT baseline skipped (GPU_BENCH_PEFT=0)"
else
	PYTHONUNBUFFERED=1 timeout "$left" python3 bench/baselines/peft_generate.py --out "$out/peft.json" >"$out/peft.log" 2>&1 || {
		echo "PEFT baseline failed or was stopped (rc $?); last lines:"
		tail -5 "$out/peft.log"
	}
fi
peft=()
[ -s "$out/peft.json" ] && peft=(--peft "$out/peft.json")
[ -s "$out/engine.json" ] || exit 1
"$cuda" bench engine --report "$out/engine.json" "${peft[@]}" --out "$out" || exit 1
exit $rc
