#!/usr/bin/python3
"""Test helper: an S3 server that answers badly on purpose, for one bucket.

  fakes3.py PORT BUCKET

Listings (ListObjectsV2 with delimiter "/") by prefix:
  ""           ok.txt, nolen, and the prefixes below
  trunc/       XML cut off in the middle
  escape/      escape/good and a key outside the prefix (other/evil)
  notoken/     IsTruncated without a continuation token
  badnames/    fine, a name of 300 bytes, and an empty name part (badnames//)
A listing of one key (a mount check or a directory probe) answers that
those prefixes exist, and no other. HEAD nolen answers 200 without a Content-Length; ok.txt and
escape/good read as "hello" and "esc".
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

OBJECTS = {"ok.txt": b"hello", "escape/good": b"esc", "badnames/fine": b"fine"}
PREFIXES = ["trunc/", "escape/", "notoken/", "badnames/"]


def contents(key, size):
    return (f"<Contents><Key>{escape(key)}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
            f"<ETag>&quot;e{size}&quot;</ETag><Size>{size}</Size></Contents>")


def listing(prefix, body, truncated=False, token=None):
    t = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
            f"<Prefix>{escape(prefix)}</Prefix><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            f"{t}{body}</ListBucketResult>").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body=b"", headers=(), length=True):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_list(self, q):
        prefix = q.get("prefix", [""])[0]
        if q.get("max-keys", ["1000"])[0] == "1":
            known = prefix == "" or prefix in PREFIXES
            return self.send(200, listing(prefix, contents(prefix + "x", 1) if known else ""))
        if prefix == "":
            body = contents("ok.txt", 5) + contents("nolen", 10)
            body += "".join(f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in PREFIXES)
            return self.send(200, listing(prefix, body))
        if prefix == "trunc/":
            return self.send(200, listing(prefix, contents("trunc/a", 1))[:60])
        if prefix == "escape/":
            return self.send(200, listing(prefix, contents("escape/good", 3) + contents("other/evil", 4)))
        if prefix == "notoken/":
            return self.send(200, listing(prefix, contents("notoken/a", 1), truncated=True))
        if prefix == "badnames/":
            body = contents("badnames/fine", 4) + contents("badnames/" + "x" * 300, 1)
            body += "<CommonPrefixes><Prefix>badnames//</Prefix></CommonPrefixes>"
            return self.send(200, listing(prefix, body))
        return self.send(200, listing(prefix, ""))

    def do_GET(self):
        url = urlsplit(self.path)
        parts = url.path.split("/", 2)
        if len(parts) < 3 or not parts[2]:
            return self.do_list(parse_qs(url.query, keep_blank_values=True))
        key = unquote(parts[2])
        if key == "nolen":
            return self.send(200, b"", [("ETag", '"e10"')], length=False)
        data = OBJECTS.get(key)
        if data is None:
            return self.send(404, b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>")
        rng = self.headers.get("Range")
        etag = [("ETag", f'"e{len(data)}"')]
        if rng and rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            a, b = int(a), min(int(b), len(data) - 1)
            return self.send(206, data[a:b + 1], etag + [("Content-Range", f"bytes {a}-{b}/{len(data)}")])
        return self.send(200, data, etag)

    do_HEAD = do_GET


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
