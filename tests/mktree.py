#!/usr/bin/env python3
"""Generates the integration-test tree: nested directories, many small files,
edge sizes around the page size, odd names, and optionally one large file.

usage: mktree.py DIR [--small N] [--large-mib M] [--page-size BYTES]
"""
import argparse
import os
import random


def write(path, size, rnd):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rnd.randbytes(n))
            left -= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large-mib", type=int, default=0)
    ap.add_argument("--page-size", type=int, default=1 << 20)
    a = ap.parse_args()
    rnd = random.Random(42)
    ps = a.page_size
    os.makedirs(a.dir, exist_ok=True)
    for i in range(a.small):
        d = os.path.join(a.dir, "small", "d%02d" % (i % 20), "e%d" % (i % 3))
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "f%05d.bin" % i), rnd.randrange(0, 48 << 10), rnd)
    edge = os.path.join(a.dir, "edge")
    os.makedirs(edge, exist_ok=True)
    for name, size in (("empty", 0), ("one", 1), ("page", ps), ("page-1", ps - 1),
                       ("page+1", ps + 1), ("two-pages", 2 * ps), ("3.5-pages", ps * 7 // 2)):
        write(os.path.join(edge, name), size, rnd)
    odd = os.path.join(a.dir, "odd names", "über ünïcødé", "日本語")
    os.makedirs(odd, exist_ok=True)
    for name in ("with space.txt", "ütf-8 ✓.txt", "plus+percent%.txt", "quote'\"s.txt"):
        write(os.path.join(odd, name), rnd.randrange(1, 300000), rnd)
    os.makedirs(os.path.join(a.dir, "a", "b", "c", "d", "e"), exist_ok=True)
    write(os.path.join(a.dir, "a", "b", "c", "d", "e", "deep.bin"), 12345, rnd)
    os.chmod(os.path.join(edge, "one"), 0o600)
    os.chmod(os.path.join(edge, "page"), 0o755)
    if a.large_mib:
        write(os.path.join(a.dir, "large.bin"), a.large_mib << 20, rnd)


if __name__ == "__main__":
    main()
