#!/usr/bin/python3
"""Test helper: reads FILE with O_DIRECT in BS-byte reads (bypassing the
kernel page cache, so every read reaches the daemon) and prints one line:

  reads=N bytes=B max_ms=M total_s=S

Usage: direct_read.py FILE [BS]. Exits 1 (with the error) if a read fails.
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
    start = time.monotonic()
    try:
        while True:
            t = time.monotonic()
            n = os.preadv(fd, [buf], off)
            worst = max(worst, time.monotonic() - t)
            if n <= 0:
                break
            off += n
            reads += 1
    except OSError as e:
        print(f"read at {off}: {e}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
    print(f"reads={reads} bytes={off} max_ms={worst * 1000:.1f} total_s={time.monotonic() - start:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
