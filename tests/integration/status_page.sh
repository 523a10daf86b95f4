#!/bin/bash
# The status page on the metrics address: headless Chromium loads it, waits
# for its refreshes, and the numbers in its DOM match /metrics; a screenshot
# is left in the build tree (tests/status_page.png) for people to look at.
# /status.json is valid JSON with the jobs; other paths 404, other methods 405.
. "$(dirname "$0")/../lib.sh"

command -v curl >/dev/null || skip "curl not installed"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || skip "chromium not installed (tools/install-deps.sh)"

mkdir -p "$T/src/d"
head -c $((200 << 20)) /dev/urandom >"$T/src/big"
for i in $(seq 20); do head -c 100000 /dev/urandom >"$T/src/d/f$i"; done
port=$(free_port)
url=http://127.0.0.1:$port
mount_logged "$T/src" "$T/m" "$T/log" -o shards=2,ram_cache=512M,metrics=127.0.0.1:"$port"

cat "$T/m/d"/* >/dev/null
$CTL -m "$T/m" load "$T/m/d" >/dev/null || fail "load job failed"
exec 7<"$T/m/big"   # one file held open
# Some traffic the chart can show: a sequential read from the source, then from RAM.
dd if="$T/m/big" of=/dev/null bs=1M iflag=direct 2>/dev/null
sleep 1.2
dd if="$T/m/big" of=/dev/null bs=1M iflag=direct 2>/dev/null
sleep 1.2

chrome() {
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
		--hide-scrollbars --user-data-dir="$T/chrome" "$@" 2>>"$T/chrome.log"
}
chrome --virtual-time-budget=3500 --dump-dom "$url/" >"$T/dom.html" || fail "chromium failed: $(tail -3 "$T/chrome.log")"
curl -sf "$url/metrics" >"$T/scrape" || fail "no /metrics"
python3 - "$T/dom.html" "$T/scrape" <<'PY' || fail "the page and /metrics disagree"
import html.parser, sys
vals, refreshes = {}, 0
class P(html.parser.HTMLParser):
    def handle_starttag(self, tag, attrs):
        global refreshes
        a = dict(attrs)
        if tag == "body":
            refreshes = int(a.get("data-refreshes", 0))
        if "id" in a and "data-value" in a:
            vals[a["id"]] = a["data-value"]
P().feed(open(sys.argv[1]).read())
m = {}
for line in open(sys.argv[2]):
    if not line.startswith("#"):
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
assert refreshes >= 2, f"the page refreshed {refreshes} times"
checks = [("ram-used", 'cachefs_cache_bytes{tier="ram"}'), ("open-files", "cachefs_open_files"),
          ("names", "cachefs_metadata_names"), ("source-inflight", "cachefs_source_reads_in_flight"),
          ("shared", "cachefs_shared_handles"),
          ("hit-ratio", "cachefs_hit_ratio")]
for el, metric in checks:
    got, want = float(vals[el]), m[metric]
    assert abs(got - want) <= 1e-6 * max(1, want), f"{el} shows {got}, /metrics says {metric} {want}"
    print(f"  {el} = {vals[el]} (as {metric})")
assert float(vals["ram-used"]) >= 200 << 20, vals
assert float(vals["open-files"]) >= 1, vals
PY
pass "the page refreshes and its RAM, open files, names, in-flight and hit ratio match /metrics"

chrome --window-size=1280,900 --virtual-time-budget=2500 --screenshot="$T/page.png" "$url/" >/dev/null ||
	fail "no screenshot: $(tail -3 "$T/chrome.log")"
[ "$(stat -c %s "$T/page.png")" -gt 20000 ] || fail "the screenshot is nearly empty"
mkdir -p "$top_builddir/tests"
cp "$T/page.png" "$top_builddir/tests/status_page.png"
pass "screenshot in $top_builddir/tests/status_page.png"

python3 - "$url" <<'PY' || fail "/status.json"
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1] + "/status.json?history=1"))
assert d["ok"] and d["jobs"] and d["jobs"][0]["kind"] == "load" and d["jobs"][0]["state"] == "done", d["jobs"]
assert len(d["history"]) >= 3 and all(len(x) == 4 for x in d["history"]), d["history"]
assert d["history"][-1][1] >= 200 << 20, d["history"][-1]   # the RAM tier served the second read
PY
pass "/status.json: status, jobs and the last minutes of bytes served by tier"

[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/nothing")" = 404 ] || fail "GET /nothing is not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/metrics/x")" = 404 ] || fail "GET /metrics/x is not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/metrics")" = 405 ] || fail "POST /metrics is not 405"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$url/")" = 405 ] || fail "DELETE / is not 405"
[ "$(curl -s -o /dev/null -w '%{http_code}' -I "$url/")" = 200 ] || fail "HEAD / is not 200"
pass "other paths get 404, other methods 405, HEAD works"
exec 7<&-
unmount_cachefs "$T/m"
