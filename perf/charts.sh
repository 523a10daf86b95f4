#!/bin/bash
# Draws the README's charts from the benchmarks' CSV results: one SVG per
# perf/results/NAME.csv in docs/perf/NAME.svg. Rows files (what
# perf/lib.sh's table writes) become bars of the ratio against each row's
# reference, with the line at 1.0; smallfiles-epochs.csv becomes files/s per
# system and epoch, latency.csv percentiles per system. Needs gnuplot
# (Debian gnuplot-nox).
#
# usage: perf/charts.sh [RESULTS_DIR [OUT_DIR]]
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
results=${1:-$src/perf/results}
out=${2:-$src/docs/perf}
command -v gnuplot >/dev/null || { echo "perf/charts.sh: gnuplot missing (tools/install-deps.sh)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

titles() {
	case $1 in
	tiers) echo "Local source: cachefs against the limit that applies (perf/run.sh)" ;;
	ssd) echo "SSD tier against fio on the same file system (perf/ssd.sh)" ;;
	s3) echo "S3 source against curl, s3fs and rclone on one s3rver (perf/s3.sh)" ;;
	meta) echo "Metadata: this build against the build before (perf/meta.sh)" ;;
	smallfiles) echo "Small-file epochs against the page cache and peers (perf/smallfiles.sh)" ;;
	http) echo "Cold reads from nginx through the HTTP source (perf/http.sh)" ;;
	cluster) echo "Three nodes sharing one cache over one s3rver (perf/cluster.sh)" ;;
	*) echo "$1" ;;
	esac
}

# bars TITLE WIDTH,HEIGHT YMIN SCRIPT PLOT: clustered bars on a log scale,
# $out/$name.svg, from the .tsv files PLOT names in $tmp.
bars() {
	(cd "$tmp" && gnuplot) <<EOF
set terminal svg size $2 dynamic font "sans,12" background "white"
set output "$out/$name.svg"
set title "$1\n{/*0.8 $stamp, $4}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set logscale y
set yrange [$3:*]
set grid ytics
set key top right
set xtics noenhanced font ",10"
set datafile separator "\t"
plot $5
EOF
}

n=0
for csv in "$results"/*.csv; do
	[ -e "$csv" ] || continue
	name=$(basename "$csv" .csv)
	stamp=$(sed -n '1s/^# //p' "$csv")
	if [ "$name" = smallfiles-epochs ]; then
		python3 - "$csv" "$tmp/epochs.tsv" <<'PY'
import csv, sys
names = {"local": "local files", "cfs": "cachefs", "s3fs": "s3fs", "rclone": "rclone"}
rows = {}
for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#")):
    rows.setdefault(r["system"], {})[r["epoch"]] = r["files_per_s"]
with open(sys.argv[2], "w") as f:
    for s, e in rows.items():
        f.write(f'"{names.get(s, s)}"\t{e.get("1", 0)}\t{e.get("2", 0)}\n')
PY
		bars "Data-loader epochs over 5000 small files, files/s (log scale)" 760,420 100 perf/smallfiles.sh \
			'"epochs.tsv" using 2:xtic(1) title "epoch 1 (cold)" lc rgb "#e0862b", "" using 3 title "epoch 2" lc rgb "#2f7dd1"'
	elif [ "$name" = latency ]; then
		python3 - "$csv" "$tmp/lat.tsv" <<'PY'
import csv, sys
with open(sys.argv[2], "w") as f:
    for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#")):
        f.write(f'"{r["system"]}"\t{r["p50_us"]}\t{r["p99_us"]}\t{r["p999_us"]}\n')
PY
		bars "4 KiB random read latency, one reader, microseconds (log scale)" 900,440 0.5 perf/latency.sh \
			'"lat.tsv" using 2:xtic(1) title "p50" lc rgb "#2f7dd1", "" using 3 title "p99" lc rgb "#8a4fd1", "" using 4 title "p99.9" lc rgb "#e0862b"'
	else
		python3 - "$csv" "$tmp/rows.tsv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#")) if r["ratio"].strip()]
with open(sys.argv[2], "w") as f:
    for i, r in enumerate(reversed(rows)):
        label = f'{r["measurement"]} vs {r["reference_is"]}'.replace('"', "'")
        # Green where cachefs does better: a higher ratio, or a lower one for
        # costs (CPU-seconds, times in s or ms).
        m = r["measurement"]
        lower_better = "CPU-seconds" in m or "(s)" in m or "(ms)" in m
        good = (float(r["ratio"]) < 1) if lower_better else (float(r["ratio"]) >= 1)
        f.write(f'{i}\t{float(r["ratio"])}\t"{label}"\t{1 if good else 0}\n')
# A log scale once the ratios span more than 30x (a latency 50x worse would
# flatten every other bar); the bars start at the scale's left edge.
ratios = [float(r["ratio"]) for r in rows] + [1]
lo, hi = min(ratios), max(ratios)
with open(sys.argv[2] + ".scale", "w") as f:
    f.write(f"set logscale x\nset xrange [{lo / 2}:{hi * 2}]\nfloor = {lo / 2}\n" if hi / lo > 30
            else "set xrange [0:*]\nfloor = 0\n")
PY
		[ -s "$tmp/rows.tsv" ] || continue
		count=$(wc -l <"$tmp/rows.tsv")
		(cd "$tmp" && gnuplot) <<EOF
set terminal svg size 980,$((90 + 34 * count)) dynamic font "sans,11" background "white"
set output "$out/$name.svg"
set title "$(titles "$name")\n{/*0.85 cachefs / the reference measured in the same run (green: cachefs better); $stamp}"
set datafile separator "\t"
set style fill solid 0.9 noborder
set yrange [-0.6:$count - 0.4]
load "rows.tsv.scale"
set ytics scale 0 font ",10" noenhanced
set grid xtics
set lmargin at screen 0.55
set arrow from 1, graph 0 to 1, graph 1 nohead dt 2 lc rgb "#444444"
unset key
plot "rows.tsv" using 2:1:(floor):2:(\$1 - 0.34):(\$1 + 0.34):(\$4 > 0.5 ? 0x2c9a5a : 0x2f7dd1):ytic(3) with boxxyerror lc rgb variable, \
     "" using 2:1:(sprintf(" %.2fx", \$2)) with labels left font ",10"
EOF
	fi
	n=$((n + 1))
	echo "$out/$name.svg"
done
[ "$n" -gt 0 ] || { echo "perf/charts.sh: no CSV results in $results (run the perf/ scripts first)" >&2; exit 1; }
