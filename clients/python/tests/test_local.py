"""The client against fake page servers and a fake etcd on loopback (no
daemons): stripes go to their owners, a wrong digest is a node's failure
and never wrong bytes, a hung node costs peer_timeout, a source failure
is the answer, load() waits and gives up, arguments are checked."""
import base64
import errno
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import xxhash

from cachefs_fsspec import CachefsFileSystem, LoadError
from cachefs_fsspec.members import Members
from cachefs_fsspec.placement import STRIPE, Placement, node_hash

FILE = bytes(range(256)) * (10 * STRIPE // 1024)    # 2.5 stripes


class Handler(BaseHTTPRequestHandler):
    """A page server holding FILE as f.bin, and etcd's /v3/kv/range listing `members`."""

    def log_message(self, *args):
        pass

    def send(self, code, body, headers=()):
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        for k, v in dict(headers, **{"Content-Length": str(len(body))}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s, url = self.server, urlsplit(self.path)
        q = dict(parse_qsl(url.query))
        if self.headers.get("Authorization") != "Bearer tok":
            return self.send(401, {"error": "wants the token"})
        if url.path == "/v1/info":
            return self.send(200, {"node": s.serves, "proto": 1, "page_size": 1 << 20, "stripe": STRIPE})
        if url.path == "/v1/stat":
            return self.send(200, s.stat) if q["path"] == "f.bin" else self.send(404, {"error": "no such file"})
        if url.path == "/v1/read":
            s.asked.append((q.get("soon"), self.headers["Range"]))
            if s.fail:
                return self.send(s.fail, {"error": "f.bin: Input/output error"})
            if s.busy and q.get("soon") == "1":
                s.busy -= 1
                return self.send(202, {"error": "the pages are being fetched; ask again"})
            a, b = map(int, self.headers["Range"][len("bytes="):].split("-"))
            if a // STRIPE != b // STRIPE:
                return self.send(400, {"error": "a read spans stripes"})    # the client cuts them
            s.reads.append(a // STRIPE)
            body = FILE[a:b + 1]
            digest = xxhash.xxh3_64_intdigest(body) ^ s.lie
            return self.send(206, body, {"X-Cachefs-Digest": "xxh3:%016x" % digest})
        if url.path == "/v1/load":
            return self.send(200, dict(s.job, job=int(q["job"])))
        self.send(404, {"error": "no such API"})

    def do_POST(self):
        s, url = self.server, urlsplit(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if url.path == "/v1/load":
            s.posts += 1
            if s.fail:
                return self.send(s.fail, {"error": "8 jobs are running already"})
            return self.send(200, {"job": 7, "node": s.name})
        if url.path == "/v1/load/cancel":
            s.job["state"] = "cancelled"
            return self.send(200, dict(s.job, job=7))
        if url.path == "/v3/kv/range":
            return self.send(200, {"kvs": s.members})
        self.send(404, {"error": "no such API"})


@pytest.fixture
def nodes():
    servers = []
    for _ in range(2):
        s = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        s.daemon_threads = True
        s.name, s.lie, s.reads, s.job = "127.0.0.1:%d" % s.server_port, 0, [], {"state": "running"}
        s.serves, s.asked, s.fail, s.busy, s.posts = s.name, [], 0, 0, 0
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(s)
    # A file id whose first stripe node 0 owns and whose second node 1 does.
    owns(servers, [s.name for s in servers])
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def owns(servers, owners, names=None):
    """Gives f.bin an id whose stripe k the member owners[k] owns among `names`."""
    pl = Placement(names or [s.name for s in servers])
    fid = next(f for f in range(10000) if all(pl.rank(f, k)[0] == o for k, o in enumerate(owners)))
    for s in servers:
        s.stat = {"name": "f.bin", "type": "file", "size": len(FILE), "mtime_ns": 0, "mode": 0o644, "etag": "e",
                  "id": "%016x" % fid, "version": "%016x" % 1}


def connect(nodes, **kwargs):
    return CachefsFileSystem(workers=",".join(s.name for s in nodes), token="tok", skip_instance_cache=True,
                             **kwargs)


def test_stripes_go_to_their_owners(nodes):
    fs = connect(nodes)
    pl = Placement([s.name for s in nodes])
    fid = int(nodes[0].stat["id"], 16)
    assert fs.cat_file("f.bin") == FILE
    assert fs.cat_file("f.bin", STRIPE - 10, 2 * STRIPE + 10) == FILE[STRIPE - 10:2 * STRIPE + 10]
    for s in nodes:
        assert sorted(s.reads) == sorted(2 * [k for k in range(3) if pl.rank(fid, k)[0] == s.name])


def test_wrong_digest_is_the_nodes_failure(nodes):
    # The liar is not the node that stats f.bin: a good answer of any kind would count as its recovery.
    stats = Placement([s.name for s in nodes]).rank(node_hash("f.bin"), 0)[0]
    honest, liar = sorted(nodes, key=lambda s: s.name != stats)
    liar.lie = 1
    fs = connect(nodes)
    assert fs.cat_file("f.bin") == FILE
    assert liar.reads and sorted(honest.reads) == [0, 1, 2]
    for _ in range(2):
        assert fs.cat_file("f.bin") == FILE
    assert liar.name in fs._skipped           # three failures in a row: down
    liar.reads.clear()
    assert fs.cat_file("f.bin") == FILE
    assert liar.reads == []       # down: asked last
    honest.lie = 1
    with pytest.raises(OSError, match="digest"):
        fs.cat_file("f.bin", 0, 10)


def test_load_waits_and_gives_up(nodes):
    fs = connect(nodes)
    with pytest.raises(TimeoutError):
        fs.load("cachefs://f.bin", timeout=0.3)
    assert fs.load_progress("f.bin")["state"] == "cancelled"
    for s in nodes:
        s.job = {"state": "failed", "error_count": 1, "errors": ["f.bin: EIO"]}
    with pytest.raises(LoadError, match="EIO") as e:
        fs.load("f.bin")
    assert e.value.job["state"] == "failed"
    for s in nodes:
        s.job = {"state": "done", "error_count": 0}
    assert fs.load("f.bin")["state"] == "done"
    with pytest.raises(ValueError, match="no load"):
        fs.load_progress("g.bin")


def test_arguments(nodes, tmp_path):
    with pytest.raises(ValueError, match="one of them"):
        CachefsFileSystem(token="tok")
    with pytest.raises(ValueError, match="one of them"):
        CachefsFileSystem(workers=nodes[0].name, etcd_hosts=nodes[0].name, token="tok")
    with pytest.raises(ValueError, match="token_file=.*No such file"):
        CachefsFileSystem(workers=nodes[0].name, token_file=str(tmp_path / "none"))
    with pytest.raises(PermissionError, match="401"):
        CachefsFileSystem(workers=nodes[0].name, token="wrong")
    dead = nodes[0].name
    nodes[0].shutdown()
    nodes[0].server_close()
    with pytest.raises(ValueError, match="no live worker"):
        CachefsFileSystem(workers=dead, token="tok")
    with pytest.raises(ValueError, match="etcd .* does not answer"):
        CachefsFileSystem(etcd_hosts=dead, token="tok")


def kv(key, value):
    return {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode()}


def test_etcd_members(nodes):
    etcd = nodes[0]
    etcd.members = [kv("cachefs/c/members/a:1", '{"node": "a:1", "proto": 1, "page_size": 1048576}'),
                    kv("cachefs/c/members/b:1", '{"node": "a:1", "proto": 1}'),
                    kv("cachefs/c/members/c:1", "not json"),
                    kv("cachefs/c/members/d:1", '{"node": "d:1", "proto": 2}'),
                    kv("cachefs/c/members/e:1", '{"node": "e:1", "proto": 1, "page_size": 65536}')]
    m = Members(etcd_hosts="127.0.0.1:1," + etcd.name, cluster="c", refresh_s=0)
    assert m.placement().names == ("a:1", "e:1")
    m.learn_page_size(1 << 20)       # the daemons leave out a member that cuts pages another way
    assert m.placement().names == ("a:1",)
    etcd.members = []                # every lease lapsed at once (etcd restarting)
    assert m.placement().names == ("a:1",)
    etcd.shutdown()
    etcd.server_close()
    assert m.placement().names == ("a:1",)    # etcd gone: the last list stays


def test_hung_node_costs_peer_timeout(nodes):
    # Accepts connections (the kernel does, from its backlog) and never answers: a stopped process.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    name = "127.0.0.1:%d" % hung.getsockname()[1]
    names = [s.name for s in nodes] + [name]
    owns(nodes, [name], names)
    fs = CachefsFileSystem(workers=",".join(names), token="tok", skip_instance_cache=True,
                           peer_timeout=0.3, read_timeout=30)
    t = time.monotonic()
    assert fs.cat_file("f.bin", 0, 10) == FILE[:10]
    assert time.monotonic() - t < 3
    for _ in range(2):
        fs.cat_file("f.bin", 0, 10)
    assert fs._skipped[name][1] == 2.0       # three timeouts in a row, /v1/info's included: down
    t = time.monotonic()
    assert fs.cat_file("f.bin", 0, 10) == FILE[:10]
    assert time.monotonic() - t < 0.25       # not asked first any more
    fs._skipped[name] = (0.0, 2.0)           # its backoff ran out, and it fails again: twice as long
    fs.cat_file("f.bin", 0, 10)
    assert fs._skipped[name][1] == 4.0
    # A stat whose node is the hung one: peer_timeout, then the next node (a 404 here, from a live node).
    del fs._skipped[name]
    path = next(p for p in (f"x{i}" for i in range(1000)) if fs._meta_nodes(p)[0] == name)
    t = time.monotonic()
    with pytest.raises(FileNotFoundError):
        fs.info(path)
    assert time.monotonic() - t < 3
    hung.close()


def test_source_failure_is_the_answer(nodes):
    fs = connect(nodes)
    for s in nodes:
        s.fail = 502
    with pytest.raises(OSError, match="f.bin: Input/output error") as e:
        fs.cat_file("f.bin", 0, 10)
    assert e.value.errno == errno.EIO
    assert len(nodes[0].asked) + len(nodes[1].asked) == 1     # no other node asked
    assert not fs._fails and not fs._skipped


def test_being_fetched_then_bytes(nodes):
    fs = connect(nodes)
    nodes[0].busy = 1
    assert fs.cat_file("f.bin", 0, 10) == FILE[:10]
    assert nodes[0].asked == [("1", "bytes=0-9"), (None, "bytes=0-9")] and not nodes[1].asked
    assert not fs._fails


def test_load_is_not_started_twice(nodes):
    fs = connect(nodes)
    for s in nodes:
        s.fail = 503
    with pytest.raises(OSError, match="8 jobs are running already"):
        fs.submit_load("f.bin")
    assert nodes[0].posts + nodes[1].posts == 1


def test_workers_must_be_the_daemons_names(nodes):
    nodes[1].serves = "host1:9470"
    with pytest.raises(ValueError, match=f"worker {nodes[1].name} serves as host1:9470"):
        connect(nodes)


def test_environment_is_ignored(nodes, tmp_path, monkeypatch):
    # requests would put .netrc's Basic auth in place of the token, and go through the proxy.
    (tmp_path / "netrc").write_text("default login u password p\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fs = connect(nodes)
    assert fs.cat_file("f.bin", 0, 10) == FILE[:10]
    nodes[0].members = [kv("cachefs/c/members/a:1", '{"node": "a:1", "proto": 1}')]
    assert Members(etcd_hosts=nodes[0].name, cluster="c").placement().names == ("a:1",)


def test_reads_are_whole_pages(nodes):
    fs = connect(nodes)
    mib = 1 << 20
    with fs.open("f.bin") as f:
        f.seek(123456)
        assert f.read(512) == FILE[123456:123456 + 512]
        assert f.read(512) == FILE[123456 + 512:123456 + 1024]
        f.seek(STRIPE - 10)                         # a seek: no read-ahead, a page each side of the stripe's end
        assert f.read(20) == FILE[STRIPE - 10:STRIPE + 10]
        assert f.read(mib) == FILE[STRIPE + 10:STRIPE + 10 + mib]   # follows: a page more ahead
    asked = [r for s in nodes for _, r in s.asked]
    assert sorted(asked, key=lambda r: int(r[6:].split("-")[0])) == [
        f"bytes=0-{mib - 1}", f"bytes={STRIPE - mib}-{STRIPE - 1}", f"bytes={STRIPE}-{STRIPE + mib - 1}",
        f"bytes={STRIPE + mib}-{STRIPE + 3 * mib - 1}"]


def test_read_only(nodes):
    fs = connect(nodes)
    for call in (lambda: fs.mkdir("d"), lambda: fs.makedirs("d"), lambda: fs.rm("f.bin"), lambda: fs.touch("g"),
                 lambda: fs.mv("f.bin", "g"), lambda: fs.cp_file("f.bin", "g")):
        with pytest.raises(OSError, match="reads only") as e:
            call()
        assert e.value.errno == errno.EROFS


def test_cat_ranges_takes_tuples(nodes):
    fs = connect(nodes)
    assert fs.cat_ranges(("f.bin", "f.bin"), (0, 10), (5, 20)) == [FILE[:5], FILE[10:20]]


def test_threads_share_one_pool(nodes):
    # fsspec keeps an instance per thread that asks: their reads share one executor.
    made = []
    threads = [threading.Thread(target=lambda: made.append(CachefsFileSystem(
        workers=",".join(s.name for s in nodes), token="tok"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(fs) for fs in made}) == 3
    assert len({id(fs._pool()) for fs in made}) == 1
    assert made[0].cat_file("f.bin", 0, 10) == FILE[:10]
