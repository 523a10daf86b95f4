"""Which cluster member owns a stripe of a file: rendezvous hashing, the
same formula as cluster/placement.c (tests/vectors/placement.json pins
both sides).

score(node, fid, stripe) = mix64(node_hash ^ mix64(fid * 0x9e3779b97f4a7c15 + stripe))
node_hash = the first 8 bytes, big-endian, of SHA-256(node name)

The highest score owns the stripe; the next ones are where to go when it
fails. Equal scores (never seen) go to the lower name.
"""
import hashlib

STRIPE = 4 << 20     # PAGE_STRIPE_BYTES: the unit of ownership
_M64 = (1 << 64) - 1


def mix64(x):
    """The splitmix64 finaliser (core/util.h), on 64-bit unsigned ints."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def node_hash(name):
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def score(nhash, fid, stripe):
    return mix64(nhash ^ mix64((fid * 0x9E3779B97F4A7C15 + stripe) & _M64))


class Placement:
    """An immutable member list ("HOST:PORT" names; duplicates count once)."""

    def __init__(self, names):
        self.names = tuple(sorted(set(names)))
        self._hashes = [node_hash(n) for n in self.names]

    def __len__(self):
        return len(self.names)

    def rank(self, fid, stripe):
        """The members in order of preference for stripe `stripe` of file `fid`."""
        scored = sorted(range(len(self.names)), key=lambda i: (-score(self._hashes[i], fid, stripe), i))
        return [self.names[i] for i in scored]
