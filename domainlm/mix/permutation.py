"""(n, seed) -> a pseudo-random permutation of range(n) evaluated at any index, in O(1) memory.

A shuffle of S sequences held as an index array costs 8*S bytes and grows with the corpus; this
one costs nothing: a balanced Feistel network is a bijection on [0, 2^2h) for any round function,
and "cycle walking" (re-encrypting values that land at or past n) restricts it to a bijection on
[0, n). The round function is splitmix64's finalizer, vectorized with numpy (uint64 arithmetic
wraps, which is what the hash wants). Same (n, seed) -> same permutation on every machine.
"""

from __future__ import annotations

import hashlib

import numpy as np

_ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


class Permutation:
    """`perm(indices)` maps an int array of positions in [0, n) to distinct values in [0, n)."""

    def __init__(self, n: int, seed: int | str) -> None:
        if n < 1:
            raise ValueError(f"permutation size must be >= 1, got {n}")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self._half = (bits + 1) // 2
        self._mask = np.uint64((1 << self._half) - 1)
        digest = hashlib.sha256(f"domainlm.permutation/{seed}/{n}".encode()).digest()
        self._keys = [np.uint64(int.from_bytes(digest[4 * r : 4 * r + 8], "little")) for r in range(_ROUNDS)]

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        half = np.uint64(self._half)
        left, right = x >> half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_mix(right ^ key) & self._mask)
        return (left << half) | right

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        x = np.asarray(indices, dtype=np.uint64)
        if x.size and int(x.max()) >= self.n:
            raise IndexError(f"index {int(x.max())} out of range for a permutation of {self.n}")
        y = self._encrypt(x)
        # Cycle walking: the domain is < 4n, so on average fewer than 4 extra rounds per value.
        outside = y >= np.uint64(self.n)
        while outside.any():
            y[outside] = self._encrypt(y[outside])
            outside = y >= np.uint64(self.n)
        return y.astype(np.int64)
