#!/usr/bin/env bash
# Files a GPU session's results (the gpu-session.tgz that scripts/gpu-session.sh packs and the
# device tool brings back) into DIR/<card>-<commit>/ (DIR default bench/results/engine), named
# by the card and commit that engine.json gives: h100-<commit> on an H100, h200-<commit> on an
# H200, emu-<commit> on the CPU emulator (gpu-dry-run.sh). It refuses a folder that exists: a
# run's results are never overwritten. Then it prints the variants against their defaults and
# the targets, the rows that decide what becomes a default (bench/results/engine/README.md).
#
# What it files, where the archive has it: engine.json, engine.md and peft.json (gpu-bench),
# with.json and with.md (the winners together, gpu-bench-with), gpu-check.txt and
# resources.log (gpu-check's tests.log and resources.log), sanitizer-*.log, ncu*.txt
# (gpu-profile) and session.txt (each part's own summary: check.txt, bench.txt, profile.txt).
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 gpu-session.tgz [DIR]" >&2; exit 2; }
archive=$1
dir=${2:-$(cd "$(dirname "$0")/.." && pwd)/bench/results/engine}
got=$(mktemp -d)
trap 'rm -rf "$got"' EXIT
tar xzf "$archive" -C "$got"
json=$got/gpu-bench/engine.json
[ -s "$json" ] || { echo "gpu-record: no gpu-bench/engine.json in $archive" >&2; exit 1; }

# engine.json is indented by Go's json.MarshalIndent: the report's own fields are at two spaces.
field() { sed -nE "s/^  \"$1\": \"(.*)\",?\$/\\1/p" "$json" | head -1; }
device=$(field device)
commit=$(field commit)
card=$(sed -nE 's/^NVIDIA ([A-Za-z0-9]+).*/\1/p' <<<"$device" | tr '[:upper:]' '[:lower:]')
if [ -z "$card" ]; then
	case $device in
	*emulator*) card=emu ;;
	*) card=gpu ;;
	esac
fi
[ -n "$commit" ] || { echo "gpu-record: engine.json names no commit" >&2; exit 1; }
to=$dir/$card-$commit
[ ! -e "$to" ] || { echo "gpu-record: $to exists; a run's results are not overwritten" >&2; exit 1; }
mkdir -p "$to"

put() { # put FROM TO: FROM (in the archive) as TO, if the archive has it
	[ ! -s "$got/$1" ] || cp "$got/$1" "$to/$2"
}
put gpu-bench/engine.json engine.json
put gpu-bench/engine.md engine.md
put gpu-bench/peft.json peft.json
put gpu-bench-with/engine.json with.json
put gpu-bench-with/engine.md with.md
put gpu-check/tests.log gpu-check.txt
put gpu-check/resources.log resources.log
for f in "$got"/gpu-check/sanitizer-*.log "$got"/gpu-profile/ncu*.txt; do
	[ ! -s "$f" ] || cp "$f" "$to/"
done
for part in check bench profile; do
	[ ! -s "$got/$part.txt" ] || { echo "== $part.txt"; cat "$got/$part.txt"; } >>"$to/session.txt"
done

echo "gpu-record: $device, commit $commit: $(cd "$to" && echo *) in $to"
. "$(dirname "$0")/engine-md.sh"
engine_md "$to/engine.md" variants
engine_md "$to/engine.md" targets
if [ -s "$to/with.md" ]; then
	grep -m1 '^Settings: ' "$to/with.md" || echo "with.md names no settings"
	engine_md "$to/with.md" targets
fi
