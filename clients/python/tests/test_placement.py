"""The client's placement against the vectors the C side writes (tests/vectors/placement.json)."""
import json
import pathlib

from cachefs_fsspec.placement import Placement, node_hash, score

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "vectors" / "placement.json"


def test_vectors():
    doc = json.loads(VECTORS.read_text())
    names = [n["name"] for n in doc["nodes"]]
    for n in doc["nodes"]:
        assert "%016x" % node_hash(n["name"]) == n["hash"], n["name"]
    pl = Placement(names)
    assert len(doc["cases"]) == 40
    for c in doc["cases"]:
        fid = int(c["fid"], 16)
        assert "%016x" % score(node_hash(names[0]), fid, c["stripe"]) == c["score_first_node"], c
        assert pl.rank(fid, c["stripe"]) == c["rank"], c


def test_duplicates_and_order_do_not_matter():
    a = Placement(["b:1", "a:1", "c:1", "a:1"])
    b = Placement(["c:1", "b:1", "a:1"])
    assert a.names == b.names == ("a:1", "b:1", "c:1")
    for stripe in range(20):
        assert a.rank(12345, stripe) == b.rank(12345, stripe)
