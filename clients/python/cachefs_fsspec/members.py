"""Who is in the cluster: a fixed list of page servers, or the live members
that etcd lists under cachefs/CLUSTER/members/ (each daemon registers there
under a lease, cluster/member.c), read through etcd's v3 JSON gateway."""
import base64
import json
import logging
import os
import threading
import time
import weakref

import requests

from .placement import Placement

log = logging.getLogger("cachefs_fsspec")
ETCD_TIMEOUT = (1.0, 2.0)   # (connect, read) seconds: a refresh must not hold up a read for long
PROTO = 1                   # CLUSTER_PROTO (cluster/cluster.h): the page server's API version

# Objects whose locks a forked child makes anew: a lock that another thread
# held at the fork (an etcd call in flight) stays held in the child forever.
# Keyed by id: file systems of equal arguments compare equal.
_renew_at_fork = weakref.WeakValueDictionary()
os.register_at_fork(after_in_child=lambda: [o.renew_locks() for o in list(_renew_at_fork.values())])


def renew_locks_at_fork(obj):
    """Calls obj.renew_locks() in each forked child while obj lives."""
    _renew_at_fork[id(obj)] = obj


def session():
    """A requests.Session that ignores the environment: no .netrc to replace
    the Bearer token, no $HTTP_PROXY between the client and the cluster."""
    s = requests.Session()
    s.trust_env = False
    return s


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
    on use once `refresh_s` has passed; while etcd does not answer, or lists
    no member, the last list stays in force (logged once), as the daemons do."""

    def __init__(self, workers=None, etcd_hosts=None, cluster="default", refresh_s=5.0):
        self._etcd = None
        self.fixed = bool(workers)      # the names are the user's, not the daemons' own
        if workers:
            self._now = Placement(split_hosts(workers))
            return
        self._etcd = [h if "://" in h else "http://" + h for h in split_hosts(etcd_hosts)]
        self._prefix = f"cachefs/{cluster}/members/"
        self._refresh_s = refresh_s
        self._page_size = None          # the cluster's, once a member said it
        self._stale = False             # the list in force is not etcd's latest (logged once)
        self.renew_locks()
        renew_locks_at_fork(self)
        try:
            self._records = self._read()
        except (requests.RequestException, ValueError) as e:
            raise ValueError(f"cachefs: etcd at {','.join(self._etcd)} does not answer ({_why(e)})") from None
        self._now = Placement(self._usable(self._records))
        self._next = time.monotonic() + refresh_s

    def renew_locks(self):
        self._lock = threading.Lock()   # held by the one thread that refreshes

    def learn_page_size(self, page_size):
        """Leaves out, from now on, members whose pages are cut another way."""
        self._page_size = page_size
        if self._etcd and (names := self._usable(self._records)):
            self._now = Placement(names)

    def placement(self):
        # Only one thread refreshes; the others go on with the list in hand rather than wait for etcd.
        if self._etcd and time.monotonic() >= self._next and self._lock.acquire(blocking=False):
            try:
                self._records = self._read()
                names = self._usable(self._records)
                if names:
                    self._now = Placement(names)
                    if self._stale:
                        log.warning("cachefs: etcd lists members again; %d members", len(names))
                elif not self._stale:
                    # Every lease can lapse at once while etcd restarts: no reason to stop reading.
                    log.warning("cachefs: etcd lists no member; keeping the last %d members", len(self._now))
                self._stale = not names
            except (requests.RequestException, ValueError) as e:
                if not self._stale:
                    log.warning("cachefs: etcd does not answer (%s); keeping the last %d members",
                                _why(e), len(self._now))
                self._stale = True
            finally:
                self._next = time.monotonic() + self._refresh_s
                self._lock.release()
        return self._now

    def _usable(self, records):
        """The names of the records member.c's member_check keeps: the node
        its key names, this protocol and, once known, the cluster's page size.
        Owners are computed from the same list as the daemons' that way."""
        return [name for name, rec in records
                if rec.get("node") == name and rec.get("proto") == PROTO
                and self._page_size in (None, rec.get("page_size"))]

    def _read(self):
        """The (name, record) of each key etcd lists now, from the first URL
        that answers (which is asked first from then on). Records that are
        not JSON objects are left out."""
        end = self._prefix[:-1] + chr(ord(self._prefix[-1]) + 1)   # "…/members/" -> "…/members0"
        body = {"key": _b64(self._prefix), "range_end": _b64(end)}
        for i, url in enumerate(self._etcd):
            try:
                with session() as s:
                    r = s.post(url + "/v3/kv/range", json=body, timeout=ETCD_TIMEOUT)
                r.raise_for_status()
                kvs = r.json().get("kvs", [])
            except requests.RequestException:
                if i == len(self._etcd) - 1:
                    raise
                continue
            self._etcd = self._etcd[i:] + self._etcd[:i]
            break
        records = []
        for kv in kvs:
            try:
                name = base64.b64decode(kv["key"]).decode()[len(self._prefix):]
                rec = json.loads(base64.b64decode(kv["value"]))
            except (KeyError, TypeError, ValueError):
                continue
            if isinstance(rec, dict):
                records.append((name, rec))
        return records
