#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, from binaries built elsewhere: the GPU machine
# has no Go. Build them here with `make build-gpu-check` (bin/gpukern-cuda.test and
# bin/kernels.test), send the tree with bin/ (the device tool's carry), then run this from the
# repository root.
#
# 1. every kernel against gpukern/cpuref, the full model against the golden logits, a
#    mixed-adapter batch against its rows alone (gpukern/cuda/*_gpu_test.go);
# 2. compute-sanitizer on one prefill and one decode step: memcheck (reads and writes out of
#    bounds), synccheck (barriers in divergent code) and racecheck (shared-memory races);
# 3. each kernel's registers, stack and spills as the machine's own NVRTC compiles it
#    (TestKernelResources; CI checks them with the NVRTC of Debian's CUDA 11.8 and with 12.5).
# It prints a short table last and exits non-zero when anything failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/gpukern-cuda.test
out=${OUT:-/tmp}/gpu-check
mkdir -p "$out"
[ -x "$bin" ] || { echo "no $bin: run make build-gpu-check first" >&2; exit 2; }
# Outside $OUT: only a few files come back from a device call.
export LORAFLEET_CUBIN_CACHE=${LORAFLEET_CUBIN_CACHE:-${TMPDIR:-/tmp}/lorafleet-cubin}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

cd "$root/gpukern/cuda" # the tests find testdata/ from here
"$bin" -test.v -test.timeout 3m >"$out/tests.log" 2>&1
tests=$?
grep -E '^(--- FAIL|FAIL|panic)' "$out/tests.log" | head -20

san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
sanitizer=0
rows=()
for tool in memcheck synccheck racecheck; do
	if [ -x "$san" ]; then
		# A time limit: a kernel that waits on another block forever would hold the call.
		"$san" --tool $tool --error-exitcode 3 "$bin" -test.run '^TestSanitizerStep$' -test.timeout 3m >"$out/sanitizer-$tool.log" 2>&1
		rc=$?
		summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tool.log" | tail -1)
	else
		rc=4
		summary="compute-sanitizer not found"
	fi
	[ $rc -eq 0 ] || sanitizer=$rc
	rows+=("| compute-sanitizer $tool | prefill + decode step | ${summary:-no summary} | 0 errors | $([ $rc -eq 0 ] && echo ok || echo FAIL) |")
done

# From any directory: the kernels package's tests read no files.
LORAFLEET_REQUIRE_NVRTC=1 "$root/bin/kernels.test" -test.v -test.run '^TestKernelResources$' >"$out/resources.log" 2>&1
resources=$?

echo
echo "Kernel resources (NVRTC of this machine; registers, static shared bytes, stack bytes, spilled bytes):"
grep -m1 'NVRTC' "$out/resources.log"
sed -n '/sm_90:/,$p' "$out/resources.log" | grep -E '(decode|lora|gemm)_|spills|stack frame'
echo
echo "GPU checks ($(basename "$bin"), logs in $out):"
grep -E '^\|' "$out/tests.log"
printf '%s\n' "${rows[@]}"
echo "| kernel resources | every kernel, sm_80 and sm_90 | $(grep -cE 'spills|stack frame' "$out/resources.log") spilling or stack | none | $([ $resources -eq 0 ] && echo ok || echo FAIL) |"
echo "tests: $([ $tests -eq 0 ] && echo PASS || echo "FAIL ($tests)")"
[ $tests -eq 0 ] && [ $sanitizer -eq 0 ] && [ $resources -eq 0 ]
