# Sourced by gpu-session.sh and gpu-record.sh: the parts of `bench engine`'s engine.md that they
# print, without the tables' rule lines.
#
# engine_md FILE variants|targets: the variants against their defaults, or the issue's targets;
# a line saying so where FILE has none (the targets are judged on Llama-2-7B's shape only).
engine_md() {
	local start end lines
	case $2 in
	variants) start='^Each variant against' end='^Prefill:' ;;
	targets) start='^The issue.s targets' end='$^' ;; # to the end
	*) echo "engine_md: no section $2" >&2; return 2 ;;
	esac
	lines=$(sed -n "/$start/,/$end/p" "$1" 2>/dev/null | grep -vE '^\|---|^Prefill:' || true) # none: no such section
	if [ -n "$lines" ]; then
		cut -c1-160 <<<"$lines"
	else
		echo "(${1##*/} has no $2)"
	fi
}
