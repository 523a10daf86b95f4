#!/usr/bin/env python3
"""Generates an image-folder dataset like torchvision's ImageFolder reads:
CLASSES class folders of JPEG-sized files (15-35 KB of random bytes, so no
layer can compress them), and optionally one large file beside them.

usage: mkdataset.py DIR [--files N] [--classes K] [--large-mib M]
"""
import argparse
import os
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--large-mib", type=int, default=0)
    a = ap.parse_args()
    rnd = random.Random(7)
    for c in range(a.classes):
        os.makedirs(os.path.join(a.dir, "train", "class%02d" % c), exist_ok=True)
    for i in range(a.files):
        path = os.path.join(a.dir, "train", "class%02d" % (i % a.classes), "img%06d.jpg" % i)
        with open(path, "wb") as f:
            f.write(rnd.randbytes(rnd.randrange(15 << 10, 35 << 10)))
    if a.large_mib:
        with open(os.path.join(a.dir, "large.bin"), "wb") as f:
            for _ in range(a.large_mib):
                f.write(rnd.randbytes(1 << 20))


if __name__ == "__main__":
    main()
