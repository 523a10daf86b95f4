"""Who is in the cluster: a fixed list of page servers, or the live members
that etcd lists under cachefs/CLUSTER/members/ (each daemon registers there
under a lease, cluster/member.c), read through etcd's v3 JSON gateway."""
import base64
import json
import logging
import threading
import time

import requests

from .placement import Placement

log = logging.getLogger("cachefs_fsspec")
ETCD_TIMEOUT = (1.0, 2.0)   # (connect, read) seconds: a refresh must not hold up a read for long


def split_hosts(hosts):
    """"HOST:PORT,HOST:PORT" (or a list of them) as a list of names."""
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return [h.strip() for h in hosts if h.strip()]


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def _why(e):
    # requests' own message for a refused connection runs to hundreds of characters
    r = getattr(e, "response", None)
    return f"HTTP {r.status_code}" if r is not None else type(e).__name__


class Members:
    """The members to ask, as a Placement. With etcd, the list is read again
    on use once `refresh_s` has passed; while etcd does not answer the last
    list stays in force (logged once), as the daemons do."""

    def __init__(self, workers=None, etcd_hosts=None, cluster="default", refresh_s=5.0):
        self._etcd = None
        if workers:
            self._now = Placement(split_hosts(workers))
            return
        self._etcd = [h if "://" in h else "http://" + h for h in split_hosts(etcd_hosts)]
        self._prefix = f"cachefs/{cluster}/members/"
        self._refresh_s = refresh_s
        self._lock = threading.Lock()   # held by the one thread that refreshes
        self._down = False
        try:
            self._now = Placement(self._read())
        except (requests.RequestException, ValueError) as e:
            raise ValueError(f"cachefs: etcd at {','.join(self._etcd)} does not answer ({_why(e)})") from None
        self._next = time.monotonic() + refresh_s

    def placement(self):
        # Only one thread refreshes; the others go on with the list in hand rather than wait for etcd.
        if self._etcd and time.monotonic() >= self._next and self._lock.acquire(blocking=False):
            try:
                self._now = Placement(self._read())
                if self._down:
                    log.warning("cachefs: etcd answers again; %d members", len(self._now))
                self._down = False
            except (requests.RequestException, ValueError) as e:
                if not self._down:
                    log.warning("cachefs: etcd does not answer (%s); keeping the last %d members",
                                _why(e), len(self._now))
                self._down = True
            finally:
                self._next = time.monotonic() + self._refresh_s
                self._lock.release()
        return self._now

    def _read(self):
        """The member names etcd lists now, from the first URL that answers
        (which is asked first from then on). Records that are not members'
        (not JSON, or naming a node other than their key's) are left out."""
        end = self._prefix[:-1] + chr(ord(self._prefix[-1]) + 1)   # "…/members/" -> "…/members0"
        body = {"key": _b64(self._prefix), "range_end": _b64(end)}
        for i, url in enumerate(self._etcd):
            try:
                r = requests.post(url + "/v3/kv/range", json=body, timeout=ETCD_TIMEOUT)
                r.raise_for_status()
                kvs = r.json().get("kvs", [])
            except requests.RequestException:
                if i == len(self._etcd) - 1:
                    raise
                continue
            self._etcd = self._etcd[i:] + self._etcd[:i]
            break
        names = []
        for kv in kvs:
            try:
                name = base64.b64decode(kv["key"]).decode()[len(self._prefix):]
                rec = json.loads(base64.b64decode(kv["value"]))
            except (KeyError, TypeError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("node") == name:
                names.append(name)
        return names
