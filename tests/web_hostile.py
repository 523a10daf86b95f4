#!/usr/bin/env python3
"""Hostile clients of the metrics endpoint while scrapers scrape.

usage: web_hostile.py HOST PORT [--slow N] [--scrapers N] [--each N]

Opens N slow clients that send one header line every second and never end
their request, plus N idle ones that send nothing, then runs --scrapers
threads doing --each GET /metrics each. Prints one JSON object: scrapes
that failed, the slowest scrape in seconds, and how many slow clients the
server cut off. Exits 1 if any scrape failed.
"""
import argparse
import http.client
import json
import socket
import threading
import time


def slow_client(host, port, stop, cut, idle):
    s = socket.create_connection((host, port), timeout=30)
    try:
        if not idle:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        n = 0
        while not stop.is_set():
            time.sleep(1)
            if not idle:
                s.sendall(b"X-Slow-%d: y\r\n" % n)
                n += 1
            else:
                s.settimeout(0.01)
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except socket.timeout:
                    pass
                s.settimeout(30)
    except OSError:
        with cut[1]:
            cut[0] += 1
    finally:
        s.close()


def scraper(host, port, each, res, lock):
    for _ in range(each):
        t0 = time.monotonic()
        ok = False
        try:
            c = http.client.HTTPConnection(host, port, timeout=20)
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read()
            ok = r.status == 200 and b"cachefs_cache_bytes" in body
            c.close()
        except OSError:
            pass
        dt = time.monotonic() - t0
        with lock:
            res["done"] += 1
            res["failed"] += 0 if ok else 1
            res["slowest"] = max(res["slowest"], dt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--slow", type=int, default=64)
    ap.add_argument("--scrapers", type=int, default=300)
    ap.add_argument("--each", type=int, default=10)
    a = ap.parse_args()
    stop = threading.Event()
    cut = [0, threading.Lock()]
    slow = [threading.Thread(target=slow_client, args=(a.host, a.port, stop, cut, i % 2 == 1))
            for i in range(a.slow)]
    for t in slow:
        t.start()
    time.sleep(1.5)   # the slow ones hold their slots before the scrapes begin
    res = {"done": 0, "failed": 0, "slowest": 0.0}
    lock = threading.Lock()
    scr = [threading.Thread(target=scraper, args=(a.host, a.port, a.each, res, lock))
           for _ in range(a.scrapers)]
    for t in scr:
        t.start()
    for t in scr:
        t.join()
    time.sleep(7)     # past the server's deadline: every slow client is cut by now
    stop.set()
    for t in slow:
        t.join()
    res["slow_cut"] = cut[0]
    res["slowest"] = round(res["slowest"], 3)
    print(json.dumps(res))
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
