#!/usr/bin/python3
"""Test helper: talks to the local S3 server with botocore (Debian's
python3-botocore), and signs requests the way botocore does so that tests
can compare cachefs's signatures with it.

  s3tool.py ENDPOINT put-tree BUCKET DIR [--markers]   upload DIR's files, key = relative path
  s3tool.py ENDPOINT put BUCKET KEY FILE
  s3tool.py ENDPOINT get-all BUCKET PREFIX [THREADS]  GET every object under PREFIX, print JSON files/s, MB/s
  s3tool.py ENDPOINT delete BUCKET KEY
  s3tool.py ENDPOINT get BUCKET KEY FILE               the object's bytes into FILE
  s3tool.py ENDPOINT head BUCKET KEY                   JSON: size, etag, metadata; exit 2 when missing
  s3tool.py ENDPOINT keys BUCKET PREFIX                every key below PREFIX, one a line
  s3tool.py ENDPOINT ls BUCKET PREFIX                  the same, with each one's size: KEY<TAB>SIZE
  s3tool.py ENDPOINT wait BUCKET PREFIX N SIZE SECS [EVERY]    until N keys below PREFIX have SIZE bytes (listed every EVERY s, 0.05); exit 1 at SECS
  s3tool.py ENDPOINT delete-prefix BUCKET PREFIX       every key below PREFIX
  s3tool.py - compare-sign REQUESTS SIGNED             botocore vs tests/sigv4-sign output
"""
import datetime
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import botocore.session
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials


def client(endpoint):
    s = botocore.session.get_session()
    return s.create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ.get("S3_KEY", "S3RVER"),
        aws_secret_access_key=os.environ.get("S3_SECRET", "S3RVER"),
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                      retries={"max_attempts": 5}))


def put_tree(endpoint, bucket, root, markers):
    c = client(endpoint)
    jobs = []
    dirs = set()
    for d, _, files in os.walk(root):
        rel = os.path.relpath(d, root)
        if rel != ".":
            dirs.add(rel.replace(os.sep, "/") + "/")
        for f in files:
            path = os.path.join(d, f)
            jobs.append((os.path.relpath(path, root).replace(os.sep, "/"), path))

    def put(job):
        key, path = job
        with open(path, "rb") as fh:
            c.put_object(Bucket=bucket, Key=key, Body=fh.read())

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, jobs))
        if markers:
            list(ex.map(lambda k: c.put_object(Bucket=bucket, Key=k, Body=b""), sorted(dirs)))
    print(f"{len(jobs)} objects, {len(dirs) if markers else 0} markers")


def get_all(endpoint, bucket, prefix, threads):
    """Reads every object under prefix with `threads` botocore clients, in
    shuffled order, the way a loader reading the bucket directly would."""
    import json
    import random
    import threading
    import time
    c = client(endpoint)
    keys = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    random.Random(1).shuffle(keys)
    local = threading.local()

    def get(key):
        if not hasattr(local, "c"):
            local.c = client(endpoint)
        return len(local.c.get_object(Bucket=bucket, Key=key)["Body"].read())

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        total = sum(ex.map(get, keys))
    secs = time.monotonic() - t0
    print(json.dumps({"files": len(keys), "bytes": total, "seconds": round(secs, 3),
                      "files_per_s": round(len(keys) / secs), "mbps": round(total / secs / 1e6, 1)}))


def compare_sign(requests, signed):
    """REQUESTS: the lines given to tests/sigv4-sign (METHOD KEY RANGE TOKEN
    UNIXTIME [PARAM VALUE]..., tab-separated, '-' empty); SIGNED: its output
    (WIRE-PATH TAB AUTHORIZATION). Each request is encoded and signed with
    botocore and must match byte for byte."""
    from botocore.utils import percent_encode, percent_encode_sequence
    bucket, secret, host = "bkt", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "127.0.0.1:9000"
    reqs = [l.rstrip("\n").split("\t") for l in open(requests, encoding="utf-8")]
    outs = [l.rstrip("\n").split("\t") for l in open(signed, encoding="utf-8")]
    if len(reqs) != len(outs):
        sys.exit(f"{len(reqs)} requests but {len(outs)} signatures")
    bad = 0
    for f, (wire, ours) in zip(reqs, outs):
        f = [("" if x == "-" else x) for x in f]
        method, key, rng, token, when = f[:5]
        params = dict(zip(f[5::2], f[6::2]))
        want_path = f"/{bucket}" + (f"/{percent_encode(key, safe='/~')}" if key else "")
        path, _, query = wire.partition("?")
        got_params = dict(p.split("=", 1) for p in query.split("&")) if query else {}
        want_params = dict(p.split("=", 1) for p in percent_encode_sequence(params).split("&")) if params else {}
        headers = {"host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
        if rng:
            headers["range"] = rng
        req = AWSRequest(method=method, url=f"https://{host}{wire}", headers=headers)
        # GETs and HEADs go out with an unsigned payload, as cachefs sends them.
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        with mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = datetime.datetime.utcfromtimestamp(int(when))
            S3SigV4Auth(Credentials("AKIDEXAMPLE", secret, token or None), "s3", "us-east-1").add_auth(req)
        theirs = req.headers["Authorization"]
        if path != want_path or got_params != want_params or ours != theirs:
            bad += 1
            print(f"MISMATCH {method} {key!r} {params}:\n  ours   {wire} {ours}\n"
                  f"  boto   {want_path} {want_params} {theirs}", file=sys.stderr)
    print(f"{len(reqs)} requests, {bad} mismatches")
    sys.exit(1 if bad else 0)


def main():
    endpoint, cmd, *args = sys.argv[1:]
    if cmd == "put-tree":
        put_tree(endpoint, args[0], args[1], "--markers" in args[2:])
    elif cmd == "put":
        with open(args[2], "rb") as fh:
            client(endpoint).put_object(Bucket=args[0], Key=args[1], Body=fh.read())
    elif cmd == "get-all":
        get_all(endpoint, args[0], args[1], int(args[2]) if len(args) > 2 else 8)
    elif cmd == "get":
        body = client(endpoint).get_object(Bucket=args[0], Key=args[1])["Body"].read()
        with open(args[2], "wb") as f:
            f.write(body)
    elif cmd == "head":
        import json
        from botocore.exceptions import ClientError
        try:
            h = client(endpoint).head_object(Bucket=args[0], Key=args[1])
        except ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey"):
                sys.exit(2)   # missing; any other failure raises (exit 1)
            raise
        print(json.dumps({"size": h["ContentLength"], "etag": h["ETag"], "meta": h.get("Metadata", {})}))
    elif cmd in ("keys", "ls"):
        c = client(endpoint)
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
            for o in page.get("Contents", []):
                print(o["Key"] if cmd == "keys" else "%s\t%d" % (o["Key"], o["Size"]))
    elif cmd == "wait":
        import time
        c, n, size, until = client(endpoint), int(args[2]), int(args[3]), time.monotonic() + float(args[4])
        every = float(args[5]) if len(args) > 5 else 0.05
        while True:   # once at least, even with SECS 0
            got = sum(1 for page in c.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1])
                      for o in page.get("Contents", []) if o["Size"] == size)
            if got >= n:
                sys.exit(0)
            if time.monotonic() >= until:
                sys.exit(1)
            time.sleep(every)
    elif cmd == "delete-prefix":
        c = client(endpoint)
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
            for o in page.get("Contents", []):
                c.delete_object(Bucket=args[0], Key=o["Key"])
    elif cmd == "delete":
        client(endpoint).delete_object(Bucket=args[0], Key=args[1])
    elif cmd == "compare-sign":
        compare_sign(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
