#!/usr/bin/python3
"""Test helper: reads FILE with O_DIRECT in BS-byte reads (bypassing the
kernel page cache, so every read reaches the daemon) and prints one line:

  reads=N bytes=B max_ms=M total_s=S [error=...]

Usage: direct_read.py FILE [BS]. Exits 1 if a read fails (its time counts
in max_ms).
"""
import mmap
import os
import sys
import time


def main():
    path = sys.argv[1]
    bs = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    buf = mmap.mmap(-1, bs)   # page aligned, as O_DIRECT wants
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    off = reads = 0
    worst = 0.0
    error = ""
    start = time.monotonic()
    while True:
        t = time.monotonic()
        try:
            n = os.preadv(fd, [buf], off)
        except OSError as e:
            n, error = -1, f" error=read at {off}: {e.strerror}"
        worst = max(worst, time.monotonic() - t)
        if n <= 0:
            break
        off += n
        reads += 1
    os.close(fd)
    print(f"reads={reads} bytes={off} max_ms={worst * 1000:.1f} total_s={time.monotonic() - start:.3f}{error}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
