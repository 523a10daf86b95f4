#!/bin/bash
# http(s):// sources against real web servers on loopback: s3rver serving
# objects to plain GETs (Range, ETag) and Python's http.server (no Range, no
# ETag). The manifest names the files: sized lines cost no request, lines
# without a size one HEAD, an ETag column is enforced; a URL naming one file
# mounts just that file; a GET cut off mid-body is retried from its first
# page not received; bad manifests and URLs are refused with the line.
. "$(dirname "$0")/../lib.sh"

s3_start pub
$PY3 - "$T/src" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(11)
def put(rel, size):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rnd.randbytes(size))
for i in range(200):
    put(f"small/s{i:03d}.bin", rnd.randint(1, 100 * 1024))
for name in ["sp ace.txt", "plus+sign", "ünïcödé", "a/b c/d%e"]:
    put(f"odd/{name}", rnd.randint(1, 5000))
put("big/five", 5 * 2**20 + 3)
put("big/empty", 0)
PY
$S3TOOL "$S3_EP" put-tree pub "$T/src" >/dev/null
# Sizes for all but odd/ (sized by HEAD), an ETag for big/five.
etag=$(curl -sfI "$S3_EP/pub/big/five" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
[ -n "$etag" ] || fail "s3rver gave no ETag"
(cd "$T/src" && find . -type f ! -path './odd/*' ! -path ./big/five -printf '%P\t%s\n'
 cd "$T/src" && find odd -type f
 printf 'big/five\t%s\t%s\n# a comment, then a blank line and an empty directory\n\nempty-dir/\n' \
	"$(stat -c %s big/five)" "$etag") > "$T/manifest"
mkdir -p "$T/src/empty-dir"

mount_logged "$S3_EP/pub/" "$T/mnt" "$T/log" -o "manifest=$T/manifest,shards=2,ram_cache=256M"
same_tree "$T/src" "$T/mnt"
diff <(cd "$T/src" && find . -type f -printf '%s %P\n' | LC_ALL=C sort) \
	<(cd "$T/mnt" && find . -type f -printf '%s %P\n' | LC_ALL=C sort) || fail "sizes differ"
pass "every file reads byte-identical; sizes from the manifest and from HEAD match"
unmount_cachefs "$T/mnt"
heads=$(counter "$T/log" HEAD)
[ "$heads" = 4 ] || fail "$heads HEAD requests; expected 4, one per line without a size: $(tail -n1 "$T/log")"
pass "HEAD only for the 4 manifest lines without a size"

# cat of 200 small files: exactly one GET each, nothing else.
mount_logged "$S3_EP/pub/" "$T/mnt" "$T/log" -o "manifest=$T/manifest,shards=2,ram_cache=256M"
ls -l "$T/mnt/small" > /dev/null
cat "$T/mnt"/small/* > "$T/small.cat"
cmp "$T/small.cat" <(cat "$T/src"/small/*) || fail "small files differ"
unmount_cachefs "$T/mnt"
gets=$(counter "$T/log" GET) heads=$(counter "$T/log" HEAD)
[ "$gets" = 200 ] && [ "$heads" = 0 ] || fail "cat of 200 files: $gets GET, $heads HEAD; expected 200 and 0"
pass "ls then cat of 200 files: 200 GET, 0 HEAD"

# The manifest as a path relative to the source URL.
$S3TOOL "$S3_EP" put pub MANIFEST.tsv "$T/manifest"
mount_logged "$S3_EP/pub" "$T/mnt" "$T/log" -o manifest=MANIFEST.tsv
cmp "$T/mnt/big/five" "$T/src/big/five" || fail "big/five differs (manifest fetched over HTTP)"
unmount_cachefs "$T/mnt"
pass "manifest fetched from the server"

# A wrong ETag column: the server's object is not the one listed; reads fail, never mix.
sed "s|$etag|\"0123456789abcdef0123456789abcdef\"|" "$T/manifest" > "$T/manifest.stale"
mount_logged "$S3_EP/pub/" "$T/mnt" "$T/log" -o "manifest=$T/manifest.stale"
if cat "$T/mnt/big/five" > /dev/null 2>"$T/err"; then fail "read of a file whose ETag differs succeeded"; fi
grep -q "Stale file handle" "$T/err" || fail "expected ESTALE, got: $(cat "$T/err")"
cmp "$T/mnt/big/empty" /dev/null || fail "big/empty differs"
unmount_cachefs "$T/mnt"
grep -q "changed on the server" "$T/log" || fail "no log line for the ETag mismatch: $(cat "$T/log")"
pass "an ETag other than the manifest's gives ESTALE and one log line"

# A URL that names one file mounts a directory with just that file.
mount_logged "$S3_EP/pub/big/five" "$T/mnt" "$T/log"
[ "$(ls "$T/mnt")" = five ] || fail "single-file mount lists: $(ls "$T/mnt")"
cmp "$T/mnt/five" "$T/src/big/five" || fail "single-file mount differs"
unmount_cachefs "$T/mnt"
pass "a file URL mounts that file"

# A GET cut off mid-body: the pages whose bytes came complete, and the retry asks only for the rest.
# The server sends the first GET of more than a page (a stripe's read-ahead asks for the rest of
# the stripe in one) its headers and a page and 100 bytes of its body, then closes.
CUT=$(free_port)
head -c $((8 << 20)) /dev/urandom > "$T/cut.bin"
$PY3 - "$CUT" "$T/cut.bin" <<'PY' >>"$T/cut.log" 2>&1 &
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
data = open(sys.argv[2], "rb").read()
cut = [2**20 + 100]
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def head(self):
        r = self.headers.get("Range")
        a, b = map(int, r[6:].split("-")) if r else (0, len(data) - 1)
        self.send_response(206 if r else 200)
        self.send_header("Content-Length", str(b - a + 1))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        return a, b
    def do_HEAD(self):
        self.head()
    def do_GET(self):
        a, b = self.head()
        print("GET", self.headers.get("Range"), flush=True)
        with lock:
            n = cut.pop() if cut and b - a + 1 > cut[0] else 0
        if n:
            print("CUT", a, a + 2**20, flush=True)   # the start, the first page not sent whole
            self.wfile.write(data[a:a + n])
            self.close_connection = True
            return
        self.wfile.write(data[a:b + 1])
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS+=($!)
wait_http "the cutting server" "$T/cut.log" -I "http://127.0.0.1:$CUT/cut.bin"
mount_logged "http://127.0.0.1:$CUT/cut.bin" "$T/mnt" "$T/log"
cmp "$T/mnt/cut.bin" "$T/cut.bin" || fail "a file whose GET was cut off reads other bytes"
unmount_cachefs "$T/mnt"
read -r _ start next < <(grep "^CUT" "$T/cut.log") || fail "no GET was cut: $(cat "$T/cut.log")"
grep -q "^GET bytes=$next-" "$T/cut.log" && [ "$(grep -c "^GET bytes=$start-" "$T/cut.log")" = 1 ] ||
	fail "the retry of the GET cut at $start + 1 MiB did not start at $next: $(grep -v ^CUT "$T/cut.log")"
pass "a GET cut off mid-body: its received pages complete, the retry asks for the rest"

# Python's http.server: no Range support, no ETag (Last-Modified versions it).
port=$(free_port)
(cd "$T/src" && exec $PY3 -m http.server "$port" --bind 127.0.0.1 >"$T/pyhttp.log" 2>&1) &
PIDS+=($!)
wait_http "python's http.server" "$T/pyhttp.log" -f "http://127.0.0.1:$port/big/empty"
mount_logged "http://127.0.0.1:$port/" "$T/mnt" "$T/log" -o "manifest=$T/manifest"
cmp "$T/mnt/big/five" "$T/src/big/five" || fail "big/five through a server without Range differs"
cmp "$T/mnt/odd/a/b c/d%e" "$T/src/odd/a/b c/d%e" || fail "odd name through http.server differs"
unmount_cachefs "$T/mnt"
grep -q "ignores Range requests" "$T/log" || fail "no warning about the server ignoring Range: $(cat "$T/log")"
pass "a server without Range or ETag reads right, with one warning"

# Bad input: each refused at mount with a message that says what to fix.
must_refuse "directory URL without a manifest" "name its files with -o manifest=" "$S3_EP/pub/"
printf 'ok\t1\n../etc/passwd\t10\n' > "$T/bad1"
must_refuse "a path with '..'" "bad1 line 2: '../etc/passwd' is not a relative path" "$S3_EP/pub/" -o "manifest=$T/bad1"
printf 'a\tten\n' > "$T/bad2"
must_refuse "a size that is not a number" "bad2 line 1: size 'ten' of a" "$S3_EP/pub/" -o "manifest=$T/bad2"
printf 'a/b\t1\na\t2\n' > "$T/bad3"
must_refuse "a name as file and directory" "names a twice" "$S3_EP/pub/" -o "manifest=$T/bad3"
must_refuse "a manifest that is not there" "manifest $T/nope: No such file" "$S3_EP/pub/" -o "manifest=$T/nope"
must_refuse "a manifest URL that is not there" "manifest $S3_EP/pub/nope.tsv: HTTP 404" "$S3_EP/pub/" -o manifest=nope.tsv
must_refuse "a file URL that is not there" "$S3_EP/pub/nope: HTTP 404" "$S3_EP/pub/nope"
must_refuse "a server that does not answer" "cannot reach" "http://127.0.0.1:$(free_port)/x.bin" -o timeout=2
must_refuse "a URL with a query" "without a query" "$S3_EP/pub/x?sig=1"
pass "bad URLs and manifests are refused with the file, line and reason"
