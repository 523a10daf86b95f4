#!/usr/bin/python3
"""Test helper: talks to the local S3 server with botocore (Debian's
python3-botocore), and signs requests the way botocore does so that tests
can compare cachefs's signatures with it.

  s3tool.py ENDPOINT put-tree BUCKET DIR [--markers]   upload DIR's files, key = relative path
  s3tool.py ENDPOINT put BUCKET KEY FILE
  s3tool.py ENDPOINT delete BUCKET KEY
  s3tool.py - sign < requests                           one Authorization per request line
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


def sign():
    """Each input line: METHOD HOST PATH QUERY RANGE TOKEN DATE KEY SECRET REGION
    ('-' for an empty field; PATH and QUERY as they go on the wire)."""
    for line in sys.stdin:
        f = [("" if x == "-" else x) for x in line.split()]
        method, host, path, query, rng, token, date, key, secret, region = f
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        headers = {"host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
        if rng:
            headers["range"] = rng
        req = AWSRequest(method=method, url=url, headers=headers)
        creds = Credentials(key, secret, token or None)
        when = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ")
        with mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = when
            S3SigV4Auth(creds, "s3", region).add_auth(req)
        print(req.headers["Authorization"])


def main():
    endpoint, cmd, *args = sys.argv[1:]
    if cmd == "put-tree":
        put_tree(endpoint, args[0], args[1], "--markers" in args[2:])
    elif cmd == "put":
        with open(args[2], "rb") as fh:
            client(endpoint).put_object(Bucket=args[0], Key=args[1], Body=fh.read())
    elif cmd == "delete":
        client(endpoint).delete_object(Bucket=args[0], Key=args[1])
    elif cmd == "sign":
        sign()
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
