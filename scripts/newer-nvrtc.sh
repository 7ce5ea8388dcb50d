#!/usr/bin/env bash
# Fetches the newest NVRTC that Debian packages (libnvrtc12 or later, from sid or experimental
# non-free: CUDA 12.5 on 2026-11-28) with its builtins library, unpacks both into a directory of
# their own (nothing is installed) and prints the directory that holds the libraries, for
# LD_LIBRARY_PATH. `make check-nvrtc-newer` compiles the kernels with it: Debian bookworm's
# NVRTC 11.8 left a register spill of flash_prefill unseen that the GPU machine's NVRTC 13
# made, and 12.5 makes it too. Usage: newer-nvrtc.sh [dir] (default: a cache under $TMPDIR).
set -euo pipefail
dest=${1:-${TMPDIR:-/tmp}/lorafleet-nvrtc}
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri=${uri:-http://deb.debian.org/debian}
mkdir -p "$dest"
index=$dest/index.$$
trap 'rm -f "$index" "$dest/pkg.$$.deb"' EXIT

# Each suite's libnvrtc1N packages and their builtins, as "version package filename" lines.
for suite in sid experimental; do
	curl -fsS "$uri/dists/$suite/non-free/binary-amd64/Packages.xz" | xz -d |
		awk '/^Package: /{p=$2} /^Version: /{v=$2} /^Filename: /{if (p ~ /^libnvrtc(-builtins)?1[2-9]/) print v, p, $2}'
done >"$index" || {
	echo "newer-nvrtc: no package index from $uri" >&2
	exit 1
}
version=$(awk '$2 ~ /^libnvrtc1[2-9]$/ {print $1}' "$index" | sort -V | tail -1)
if [ -z "$version" ]; then
	echo "newer-nvrtc: $uri has no libnvrtc12 or later in sid or experimental" >&2
	exit 1
fi
dir=$dest/${version//[^A-Za-z0-9.+-]/_}
lib=$dir/usr/lib/x86_64-linux-gnu
if ! ls "$lib"/libnvrtc.so.1[2-9] "$lib"/libnvrtc-builtins.so.* >/dev/null 2>&1; then
	rm -rf "$dir" # what an interrupted run left
	mkdir -p "$dir"
	# The library and the builtins of exactly this version (the library opens that builtins).
	awk -v v="$version" '$1 == v {print $3}' "$index" | sort -u | while read -r f; do
		curl -fsS -o "$dest/pkg.$$.deb" "$uri/$f"
		dpkg-deb -x "$dest/pkg.$$.deb" "$dir"
	done
fi
ls "$lib"/libnvrtc.so.1[2-9] "$lib"/libnvrtc-builtins.so.* >/dev/null
echo "$lib"
