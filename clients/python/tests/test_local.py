"""The client against fake page servers and a fake etcd on loopback (no
daemons): stripes go to their owners, a wrong digest is a node's failure
and never wrong bytes, load() waits and gives up, arguments are checked."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import xxhash

from cachefs_fsspec import CachefsFileSystem, LoadError
from cachefs_fsspec.members import Members
from cachefs_fsspec.placement import STRIPE, Placement

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
            return self.send(200, {"node": s.name, "proto": 1, "page_size": 1 << 20, "stripe": STRIPE})
        if url.path == "/v1/stat":
            return self.send(200, s.stat) if q["path"] == "f.bin" else self.send(404, {"error": "no such file"})
        if url.path == "/v1/read":
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
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(s)
    # A file id whose first stripe node 0 owns and whose second node 1 does.
    pl = Placement([s.name for s in servers])
    fid = next(f for f in range(1000) if pl.rank(f, 0)[0] == servers[0].name and pl.rank(f, 1)[0] == servers[1].name)
    for s in servers:
        s.stat = {"name": "f.bin", "type": "file", "size": len(FILE), "mtime_ns": 0, "mode": 0o644, "etag": "e",
                  "id": "%016x" % fid, "version": "%016x" % 1}
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def connect(nodes):
    return CachefsFileSystem(workers=",".join(s.name for s in nodes), token="tok", skip_instance_cache=True)


def test_stripes_go_to_their_owners(nodes):
    fs = connect(nodes)
    pl = Placement([s.name for s in nodes])
    fid = int(nodes[0].stat["id"], 16)
    assert fs.cat_file("f.bin") == FILE
    assert fs.cat_file("f.bin", STRIPE - 10, 2 * STRIPE + 10) == FILE[STRIPE - 10:2 * STRIPE + 10]
    for s in nodes:
        assert sorted(s.reads) == sorted(2 * [k for k in range(3) if pl.rank(fid, k)[0] == s.name])


def test_wrong_digest_is_the_nodes_failure(nodes):
    liar, honest = nodes
    liar.lie = 1
    fs = connect(nodes)
    assert fs.cat_file("f.bin") == FILE
    assert liar.reads and sorted(honest.reads) == [0, 1, 2]
    liar.reads.clear()
    assert fs.cat_file("f.bin") == FILE
    assert liar.reads == []       # it failed lately: asked last
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
    etcd.members = [kv("cachefs/c/members/a:1", '{"node": "a:1", "proto": 1}'),
                    kv("cachefs/c/members/b:1", '{"node": "a:1"}'),
                    kv("cachefs/c/members/c:1", "not json")]
    m = Members(etcd_hosts="127.0.0.1:1," + etcd.name, cluster="c", refresh_s=0)
    assert m.placement().names == ("a:1",)
    etcd.shutdown()
    etcd.server_close()
    assert m.placement().names == ("a:1",)    # etcd gone: the last list stays
