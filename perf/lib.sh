# Helpers shared by the benchmark scripts: medians, result rows and the
# Markdown table the README takes. Source it after setting `runs`.

median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
# med CMD...: the median of `runs` runs of CMD, each printing one number.
med() { local a=(); for _ in $(seq "$runs"); do a+=("$("$@")"); done; median "${a[@]}"; }
# json EXPR: evaluates EXPR on the JSON object `d` read from stdin, rounded.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(round($1))"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

rows=()
# row NAME CACHEFS REFERENCE REFERENCE-IS: a measured pair and its ratio.
row() {
	local r
	r=$(python3 -c "print(f'{$2/$3:.2f}x')")
	rows+=("$1|$2|$3|$4|$r")
	printf '%-52s %10s %10s  %s  (%s)\n' "$1" "$2" "$3" "$r" "$4" >&2
}
# note NAME VALUE WHAT: a figure with no ratio (a target or an explanation).
note() {
	rows+=("$1|$2| |$3|")
	printf '%-52s %10s  (%s)\n' "$1" "$2" "$3" >&2
}
table() {
	echo "| measurement | cachefs | reference | reference is | ratio |"
	echo "|---|---:|---:|---|---:|"
	for r in "${rows[@]}"; do
		IFS='|' read -r what a b refname rat <<< "$r"
		echo "| $what | $a | $b | $refname | $rat |"
	done
}
