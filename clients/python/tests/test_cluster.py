"""The client against a live cluster that tests/integration/python_client.sh
starts: three daemons on one bucket, registered in etcd. Every method,
through a fixed worker list and through etcd, byte for byte against the
bucket's local copy (CACHEFS_DATA) and node 0's mount (CACHEFS_MNT)."""
import os
import random
import socket
import time

import fsspec
import pytest

from cachefs_fsspec import CachefsFileSystem, LoadError
from cachefs_fsspec.placement import STRIPE, Placement

if not os.environ.get("CACHEFS_WORKERS"):
    pytest.skip("no cluster: CACHEFS_WORKERS is unset (tests/integration/python_client.sh sets it)",
                allow_module_level=True)

WORKERS = os.environ["CACHEFS_WORKERS"]
DATA = os.environ["CACHEFS_DATA"]
MNT = os.environ["CACHEFS_MNT"]
BIG = "big.bin"      # 20,000,000 bytes: five stripes, the last one short
OPTIONS = {
    "workers": {"workers": WORKERS, "token_file": os.environ["CACHEFS_TOKEN_FILE"]},
    "etcd": {"etcd_hosts": os.environ["CACHEFS_ETCD"], "cluster": os.environ["CACHEFS_CLUSTER"],
             "token_file": os.environ["CACHEFS_TOKEN_FILE"]},
}


def local(path):
    with open(os.path.join(DATA, path), "rb") as f:
        return f.read()


def local_files():
    out = {}
    for d, _, files in os.walk(DATA):
        for f in files:
            path = os.path.relpath(os.path.join(d, f), DATA)
            out[path] = os.path.getsize(os.path.join(d, f))
    return out


@pytest.fixture(params=sorted(OPTIONS), scope="module")
def fs(request):
    return CachefsFileSystem(skip_instance_cache=True, **OPTIONS[request.param])


def test_entry_point():
    fs = fsspec.filesystem("cachefs", **OPTIONS["etcd"])
    assert isinstance(fs, CachefsFileSystem)
    with fsspec.open(f"cachefs://{BIG}", "rb", **OPTIONS["workers"]) as f:
        assert f.read(100) == local(BIG)[:100]


def test_ls_and_info(fs):
    want = local_files()
    assert fs.find("") == sorted(want)
    assert sorted(fs.ls("cachefs://", detail=False)) == sorted(os.listdir(DATA))
    for e in fs.ls("edge"):
        assert e["type"] == "file" and e["size"] == want[e["name"]], e
    assert fs.ls(f"/{BIG}", detail=False) == [BIG]
    for path, size in want.items():
        info = fs.info(path)
        assert (info["name"], info["type"], info["size"]) == (path, "file", size)
        assert len(info["id"]) == 16
    assert fs.info("a/b")["type"] == "directory" and fs.isdir("cachefs://a/b/") and fs.isfile(BIG)
    assert fs.info("")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info("no/such/file")
    with pytest.raises(FileNotFoundError):
        fs.ls("no/such/dir")


def test_cat_file(fs):
    for path in local_files():
        assert fs.cat_file(path) == local(path), path
    assert fs.cat(f"cachefs://{BIG}") == local(BIG)
    with pytest.raises(IsADirectoryError):
        fs.cat_file("edge")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("no/such/file")


@pytest.mark.parametrize("start,end", [
    (0, 10), (STRIPE - 10, STRIPE + 10), (STRIPE, 2 * STRIPE), (STRIPE - 1, 3 * STRIPE + 1),
    (-100, None), (None, -19_999_990), (19_999_990, 30_000_000), (20_000_000, 20_000_010),
    (25_000_000, None), (500, 400), (None, None)])
def test_cat_file_ranges(fs, start, end):
    assert fs.cat_file(BIG, start, end) == local(BIG)[start:end]


def test_cat_ranges(fs):
    edge = sorted(p for p in local_files() if p.startswith("edge/"))
    paths = [BIG] * 6 + edge + ["cachefs://a/b/c/d/e/deep.bin", "no/such/file"]
    starts = [0, 5, STRIPE - 3, 4 * STRIPE + 7, 19_999_000, 30_000_000] + [1] * len(edge) + [-45, 0]
    ends = [10, 12, 2 * STRIPE + 3, None, 30_000_000, None] + [None] * len(edge) + [-5, 1]
    got = fs.cat_ranges(paths, starts, ends)
    for p, s, e, g in zip(paths[:-1], starts, ends, got):
        assert g == local(fs._strip_protocol(p))[s:e], (p, s, e)
    assert isinstance(got[-1], FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges(paths, starts, ends, on_error="raise")
    assert fs.cat_ranges([BIG, BIG], 100, 200) == [local(BIG)[100:200]] * 2


def test_open_random_reads(fs):
    want = local(BIG)
    with open(os.path.join(MNT, BIG), "rb") as m:
        assert m.read() == want     # the mount agrees with the local copy
    rnd = random.Random(7)
    with fs.open(f"cachefs://{BIG}", "rb") as f:
        assert f.size == len(want)
        for _ in range(100):
            at, n = rnd.randrange(len(want) + 10), rnd.choice([1, 100, 4096, 1 << 20, STRIPE + 3])
            f.seek(at)
            assert f.read(n) == want[at:at + n], (at, n)
            assert f.tell() == (min(at + n, len(want)) if at < len(want) else at)
        f.seek(-5, 2)
        assert f.read() == want[-5:]
    with fs.open("edge/empty") as f:
        assert f.read() == b""
    with fs.open("edge/page+1", block_size=1000, cache_type="bytes") as f:
        assert f.read() == local("edge/page+1")
    with pytest.raises(NotImplementedError):
        fs.open("new.bin", "wb")


def dead_owner():
    """A loopback address nobody listens on that, among the workers, owns some stripes of BIG."""
    fs = CachefsFileSystem(skip_instance_cache=True, **OPTIONS["workers"])
    fid = int(fs.info(BIG)["id"], 16)
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = "127.0.0.1:%d" % s.getsockname()[1]
        pl = Placement(WORKERS.split(",") + [dead])
        owned = [k for k in range(5) if pl.rank(fid, k)[0] == dead]
        if owned:
            return dead, owned


def test_dead_owner_falls_back():
    dead, owned = dead_owner()
    fs = CachefsFileSystem(skip_instance_cache=True, **dict(OPTIONS["workers"], workers=f"{WORKERS},{dead}"))
    fs._skipped.clear()     # the check at construction may have tried it already
    assert fs.cat_file(BIG) == local(BIG)
    assert dead in fs._skipped, f"{dead} owns stripes {owned} but was never asked"
    k = owned[0]
    assert fs.cat_file(BIG, k * STRIPE + 5, (k + 1) * STRIPE + 5) == local(BIG)[k * STRIPE + 5:(k + 1) * STRIPE + 5]


def test_wrong_token(tmp_path):
    (tmp_path / "token").write_text("not-the-token\n")
    for opts in OPTIONS.values():
        with pytest.raises(PermissionError, match="401"):
            CachefsFileSystem(skip_instance_cache=True, **dict(opts, token_file=str(tmp_path / "token")))


def test_etcd_with_a_dead_endpoint_first():
    opts = dict(OPTIONS["etcd"], etcd_hosts="127.0.0.1:1," + OPTIONS["etcd"]["etcd_hosts"])
    fs = CachefsFileSystem(skip_instance_cache=True, **opts)
    assert sorted(fs._members.placement().names) == sorted(WORKERS.split(","))
    assert fs.cat_file("edge/one") == local("edge/one")


def test_pandas():
    pd = pytest.importorskip("pandas")
    df = pd.read_csv("cachefs://table.csv", storage_options=OPTIONS["etcd"])
    assert df.equals(pd.read_csv(os.path.join(DATA, "table.csv")))


class Files:
    """A torch Dataset of files; each DataLoader worker opens the file system itself, on first use."""

    def __init__(self, paths, options):
        self.paths, self.options, self.fs = paths, options, None

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.fs is None:
            self.fs = fsspec.filesystem("cachefs", **self.options)
        with self.fs.open(self.paths[i]) as f:
            return self.paths[i], f.read()


@pytest.mark.parametrize("inherited", [False, True])
def test_torch_dataloader(inherited):
    torch = pytest.importorskip("torch")
    paths = sorted(local_files())
    seen = set()
    files = Files(paths, OPTIONS["etcd"])
    if inherited:     # the workers are forked with the parent's file system, used already
        files.fs = CachefsFileSystem(skip_instance_cache=True, **OPTIONS["workers"])
        assert files.fs.cat_file(BIG, 0, 10) == local(BIG)[:10]
    loader = torch.utils.data.DataLoader(files, batch_size=None, num_workers=2)
    for path, data in loader:
        assert data == local(path), path
        seen.add(path)
    assert seen == set(paths)


# ---- loads into the cluster's cache (POST /v1/load) ----

def test_load_file(fs):
    job = fs.load(f"cachefs://{BIG}", timeout=60)
    assert job["state"] == "done" and job["error_count"] == 0
    assert job["files_done"] == job["files_total"] == 1
    assert job["bytes_done"] == job["bytes_total"] == len(local(BIG))
    assert fs.load_progress(BIG)["state"] == "done"


def test_load_directory(fs):
    small = {p: n for p, n in local_files().items() if p.startswith("small/")}
    job = fs.load("small", timeout=60)
    assert job["files_done"] == job["files_total"] == len(small)
    assert job["bytes_done"] == job["bytes_total"] == sum(small.values())
    assert len(job["nodes"]) == len(WORKERS.split(",")), job["nodes"]
    assert all(n["state"] == "done" for n in job["nodes"]), job["nodes"]


def test_submit_progress_stop(fs):
    ref = fs.submit_load("")
    assert ref["node"] in WORKERS.split(",") and ref["path"] == ""
    job = fs.stop_load(ref)
    assert job["job"] == ref["job"] and job["state"] in ("cancelled", "done", "running", "listing")
    for _ in range(100):
        job = fs.load_progress("cachefs://")
        if job["state"] in ("cancelled", "done"):
            break
        time.sleep(0.1)
    assert job["state"] in ("cancelled", "done"), job
    assert fs.load_progress(ref)["state"] == job["state"]


def test_load_missing(fs):
    with pytest.raises((FileNotFoundError, LoadError)):
        fs.load("no/such/file", timeout=30)
