#!/usr/bin/env bash
# One device call of a GPU session, from binaries built elsewhere (`make build-cuda
# build-gpu-check`): gpu-check.sh, gpu-bench.sh (with the PEFT baseline unless
# GPU_BENCH_PEFT=0), the bench's winning variants together (bench engine --with) and
# gpu-profile.sh, each under a time limit, about 7 minutes in all on an H100 (run it with the
# device call's timeout_s at GPU_SESSION_SECONDS or more, default 540). Prints each one's
# summary and packs every log and result into $OUT/gpu-session.tgz: the device tool brings
# back only a few files from a call, and one archive holds them all.
#
# scripts/gpu-dry-run.sh runs the bench parts on the CPU emulator with three settings that a
# GPU call leaves alone: GPU_SESSION_PARTS (default "check bench profile") names the parts to
# run, LORAFLEET_CUDA_BIN is the binary (default bin/lorafleet-cuda), and GPU_BENCH_ARGS are
# arguments for every measuring `bench engine`, after the script's own (which they override).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
final=${OUT:-/tmp}
mkdir -p "$final"
work=$(mktemp -d)
export LORAFLEET_CUBIN_CACHE=${LORAFLEET_CUBIN_CACHE:-${TMPDIR:-/tmp}/lorafleet-cubin} # compiled once, for all three
export LORAFLEET_CUDA_BIN=${LORAFLEET_CUDA_BIN:-bin/lorafleet-cuda}
read -ra extra <<<"${GPU_BENCH_ARGS:-}"
parts=" ${GPU_SESSION_PARTS:-check bench profile} "
cd "$root"
. scripts/engine-md.sh

if [[ $parts == *" check "* ]]; then
	OUT=$work timeout -k 10 200 bash scripts/gpu-check.sh >"$work/check.txt" 2>&1
	echo "gpu-check: rc $? at ${SECONDS}s"
	grep -E '^(--- FAIL|tests:)|kernel resources|compute-sanitizer' "$work/check.txt"
	grep -A12 -E '^--- FAIL' "$work/gpu-check/tests.log" 2>/dev/null | head -40
fi

if [[ $parts == *" bench "* ]]; then
	OUT=$work GPU_BENCH_ENGINE_SECONDS=${GPU_BENCH_ENGINE_SECONDS:-200} GPU_BENCH_SECONDS=${GPU_BENCH_SECONDS:-430} \
		timeout -k 10 450 bash scripts/gpu-bench.sh "${extra[@]}" >"$work/bench.txt" 2>&1
	echo "gpu-bench: rc $? at ${SECONDS}s"
	if [ -f "$work/gpu-bench/engine.md" ]; then
		# The side-by-side variants and the targets (the rest is in the archive).
		engine_md "$work/gpu-bench/engine.md" variants
		engine_md "$work/gpu-bench/engine.md" targets
	else # no report (the bench died): each measurement as its log said it
		grep -A1 '^decode ' "$work/bench.txt" | grep -v '^--$' | paste - - | cut -c1-160 | tail -80
	fi

	# The side-by-side variants that beat the defaults (bench engine --winners), measured
	# together on the targets' rows (--with), beside the PEFT baseline above: what the targets
	# would be with them as the defaults, before any default is changed.
	bench=$work/gpu-bench
	with=$("$LORAFLEET_CUDA_BIN" bench engine --report "$bench/engine.json" --winners 2>"$work/winners.log")
	winners=$?
	if ((winners != 0)); then
		echo "bench --winners: rc $winners: $(tail -1 "$work/winners.log")"
	elif [ -n "$with" ]; then
		peft=()
		[ -s "$bench/peft.json" ] && peft=(--peft "$bench/peft.json")
		timeout -s TERM -k 10 "${GPU_WITH_SECONDS:-90}" "$LORAFLEET_CUDA_BIN" bench engine --with "$with" --batches 32,128 \
			--adapters 1,8,32 --contexts 128 --commit "$(cat bin/COMMIT 2>/dev/null)" "${peft[@]}" --out "$work/gpu-bench-with" \
			"${extra[@]}" >/dev/null 2>"$work/with.log"
		echo "bench --with $with: rc $? at ${SECONDS}s"
		engine_md "$work/gpu-bench-with/engine.md" targets
	else
		echo "bench --with: no variant beat the defaults"
	fi
fi

# The profile gets what is left of GPU_SESSION_SECONDS (the device call's limit, less the
# archive's time), 150 s at most: a call cut off at its limit brings nothing back.
left=$((${GPU_SESSION_SECONDS:-540} - SECONDS - 15))
if [[ $parts != *" profile "* ]]; then
	echo "gpu-profile: not run (GPU_SESSION_PARTS)"
elif ((left >= 20)); then # timeout 0 would mean none
	OUT=$work timeout -k 5 $((left < 150 ? left : 150)) bash scripts/gpu-profile.sh >"$work/profile.txt" 2>&1
	echo "gpu-profile: rc $? at ${SECONDS}s"
else
	echo "gpu-profile: skipped, ${left}s left"
fi
grep -E '^  [a-z_0-9]+ \(|Duration' "$work"/gpu-profile/ncu*.txt 2>/dev/null | cut -c1-160 | sed 's/^.*gpu-profile\///'

tar czf "$final/gpu-session.tgz" -C "$work" . && rm -rf "$work"
echo "results: $final/gpu-session.tgz"
