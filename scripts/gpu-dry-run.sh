#!/usr/bin/env bash
# A dry run of scripts/gpu-session.sh's bench parts on the CPU emulator (make gpu-dry-run, part
# of make emu), so that what joins the scripts to `bench engine` breaks here rather than in a
# GPU call: every variant on the tiny model's shape at batches 2 and 34 (34 over 32, as the GPU
# run's 128 is), one adapter and one a row, two contexts, the report, the winners measured
# together (--with, where any won: on the emulator, by its noise), the archive and its filing
# (gpu-record.sh). It checks that each part ran and what the report holds, not speed. From
# bin/lorafleet-emu (`go build -tags cuda,cudaemu`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() {
	echo "gpu-dry-run: $*" >&2
	cat "$out/session.log" >&2
	exit 1
}

LORAFLEET_CUDA_BIN=bin/lorafleet-emu GPU_SESSION_PARTS=bench GPU_BENCH_PEFT=0 OUT=$out \
	GPU_BENCH_ARGS="--shape testdata/tiny-llama/model/config.json --batches 2,34 --adapters 1,0 --contexts 8,16 --steps 2 --warmup 1 --prefill-prompt 16 --prefill-seqs 1" \
	bash scripts/gpu-session.sh >"$out/session.log" 2>&1 || fail "gpu-session.sh failed"
grep -q '^gpu-bench: rc 0 ' "$out/session.log" || fail "gpu-bench.sh failed"
grep -qE '^bench --with [a-z,-]+: rc 0 |^bench --with: no variant beat the defaults$' "$out/session.log" || fail "bench --with failed"
mkdir "$out/got"
tar xzf "$out/gpu-session.tgz" -C "$out/got" || fail "no archive"
md=$out/got/gpu-bench/engine.md
[ -s "$md" ] || fail "no engine.md in the archive"
# The variants at the batch over 32 ran with 32 adapters; nothing failed or stopped the run.
grep -q '^| 8 | 34 | lora, graphs off | 32 |' "$md" || fail "no variant rows at batch 34 in engine.md"
! grep -qE '^Variants that failed|^\*\*The run stopped early' "$md" || fail "a measurement failed: $(grep -A3 -E '^Variants that failed|^\*\*The run stopped' "$md")"
grep -q '^Each variant against the default' "$md" || fail "no variants table in engine.md"
# The archive filed as a GPU session's would be (gpu-record.sh), into a folder of its own.
bash scripts/gpu-record.sh "$out/gpu-session.tgz" "$out/results" >"$out/record.log" 2>&1 || fail "gpu-record.sh failed: $(tail -3 "$out/record.log")"
rec=$(echo "$out"/results/emu-*)
for f in engine.json engine.md session.txt; do
	[ -s "$rec/$f" ] || fail "gpu-record.sh filed no $f: $(ls "$rec")"
done
grep -q '^| lora, graphs off | ' "$out/record.log" || fail "gpu-record.sh printed no variants"
! bash scripts/gpu-record.sh "$out/gpu-session.tgz" "$out/results" >/dev/null 2>&1 || fail "gpu-record.sh filed over $rec"
echo "gpu-dry-run: ok ($(grep -cE '^\| [0-9]+ \| [0-9]+ \|' "$md") decode rows; $(grep -E '^bench --with' "$out/session.log"))"
