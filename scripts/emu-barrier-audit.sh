#!/usr/bin/env bash
# Which of the kernels' barriers the emulated tests stand behind: each `__syncthreads();` of
# gpukern/cuda/kernels (or only FILE:LINE arguments, e.g. sample.cu:78) is deleted in turn, in a
# copy of the working tree, and the emulated suite (go test -tags cuda,cudaemu
# ./gpukern/cuda/...) runs against it. A barrier whose deletion passes the suite is one that
# no test would miss: either it guards nothing today (block_sum's first, which only a second
# call in the same kernel would need) or a test is missing. Prints a line a barrier, then how
# many deletions the suite caught: a report to read, not a check. About 1 to 6 minutes a
# barrier (a caught one stops at the first failure), AUDIT_JOBS (default 2) at once: not part
# of make test.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kernels=$root/gpukern/cuda/kernels
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -gt 0 ]; then
	sites=("$@")
else # FILE:LINE of every barrier call, comments left out
	mapfile -t sites < <(cd "$kernels" && grep -nE '^[[:space:]]*__syncthreads\(\);' ./*.cu ./*.cuh |
		sed -E 's|^\./([^:]+):([0-9]+):.*|\1:\2|')
fi

one() { # one FILE:LINE: the suite without that barrier
	local site=$1 f=${1%%:*} l=${1##*:} d
	d=$work/$(tr '/:.' '___' <<<"$site")
	mkdir -p "$d"
	tar -C "$root" --exclude=./bin --exclude=./.git -cf - . | tar -C "$d" -xf -
	if ! sed -n "${l}p" "$d/gpukern/cuda/kernels/$f" | grep -q '__syncthreads();'; then
		echo "$site: no __syncthreads(); on that line"
		return
	fi
	sed -i "${l}s/__syncthreads();//" "$d/gpukern/cuda/kernels/$f"
	local start=$SECONDS rc first
	(cd "$d" && go test -count=1 -failfast -tags cuda,cudaemu -timeout 25m ./gpukern/cuda/... >"$d.log" 2>&1)
	rc=$?
	first=$(grep -m1 -E '^--- FAIL|^panic' "$d.log")
	if [ $rc -eq 0 ]; then
		echo "$site: PASSED without it ($((SECONDS - start)) s)"
	else
		echo "$site: caught by ${first:-a failing build (see go test)} ($((SECONDS - start)) s)"
	fi
	rm -rf "$d" "$d.log"
}
export -f one
export root work

printf '%s\n' "${sites[@]}" | xargs -P "${AUDIT_JOBS:-2}" -I{} bash -c 'one {}' | tee "$work/results"
echo "$(grep -c ': caught by ' "$work/results") of ${#sites[@]} deletions caught"
