#!/usr/bin/env bash
# Nsight Compute on one decode layer's attention and GEMM kernels, with LoRA and without
# (batch 32, 32 adapters, context 128, Llama-2-7B shapes), each kernel replayed alone: its
# time, DRAM throughput, occupancy and what its warps wait on; then one layer's LoRA kernels
# and cuBLAS GEMMs at batch 128 with 32 adapters. From bin/lorafleet-cuda built elsewhere
# (`make build-cuda`), run from the repository root on the GPU machine; about a minute.
# Writes $OUT/gpu-profile/ncu.txt, ncu-gemm.txt and ncu-128.txt.
#
# The kernel filter counts only matching launches: the 128 decode_split launches of the "lora
# off" run (one warm-up and three timed steps of 32 layers) and the first layer's qkv shrink and
# expand of the run with 32 adapters are skipped, so the nine profiled are one layer of that
# run's first step: decode_split, then the shrink and expand of o, gate/up and down, and of the
# next layer's qkv.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp}/gpu-profile
mkdir -p "$out"
cd "$root"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
bench=(bin/lorafleet-cuda bench engine --batches 32 --adapters 32 --contexts 128 --steps 3 --warmup 1 --prefill-seqs 1)
# --clock-control none: the card's clocks as the runs find them (ncu would otherwise lock them
# to base, 1.45 GHz on the H100 up to f384bcb; the device machines' rules leave clocks alone).
sections=(--clock-control none --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis)
"$ncu" -k 'regex:decode_split|lora_' --launch-skip 130 -c 9 "${sections[@]}" "${bench[@]}" >"$out/ncu.txt" 2>&1
rc=$?
# The first four gemm_small and gemm_deep launches: the first layer's qkv, o, gate/up and
# down GEMMs of the first run (LoRA and attention off).
"$ncu" -k 'regex:gemm_(small|deep)' -c 4 "${sections[@]}" "${bench[@]}" >"$out/ncu-gemm.txt" 2>&1
rc=$((rc | $?))
# Batch 128: the first layer's eight LoRA launches of the run with adapters, its four GEMMs of
# the first run, by cuBLAS (our GEMMs take 32 rows at most; cuBLAS's kernels on an H100 are
# named nvjet, sm90_xmma or cutlass), and one decode_split of the "lora off" run (4,096 blocks:
# 3.9 waves, 2.4 TB/s at f384bcb), its second step's ninth layer.
bench128=(bin/lorafleet-cuda bench engine --batches 128 --adapters 32 --contexts 128 --steps 3 --warmup 1 --prefill-seqs 1)
{
	"$ncu" -k 'regex:lora_' -c 8 "${sections[@]}" "${bench128[@]}"
	"$ncu" -k 'regex:gemm|nvjet|xmma|cutlass' -c 4 "${sections[@]}" "${bench128[@]}"
	"$ncu" -k 'regex:decode_split' --launch-skip 40 -c 1 "${sections[@]}" "${bench128[@]}"
} >"$out/ncu-128.txt" 2>&1
rc=$((rc | $?))
grep -E '^  [a-z_0-9]+ \(|    Duration|DRAM Throughput|Achieved Occupancy|Block Limit Registers' "$out"/ncu*.txt
exit $rc
