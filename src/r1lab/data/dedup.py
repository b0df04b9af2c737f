"""Exact and near-duplicate detection for completions: normalised-text hashes and word-shingle Jaccard similarity.

Near duplicates are pairs whose sets of word n-gram shingles have Jaccard similarity >= a threshold (Broder 1997).
Within one prompt's k samples every pair is compared exactly (k is small). Across a whole file, MinHash
signatures and LSH banding (Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3) propose candidate
pairs and the exact Jaccard confirms them, so a reported duplicate always meets the threshold. Hand-written
(numpy only) rather than the ``datasketch`` package: the few dozen lines needed are easy to test exactly, and a
new dependency would buy nothing at the sizes distillation data has here (thousands to a few million rows).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

_PRIME = (1 << 31) - 1  # Mersenne prime for the universal hash family (a * h + b) mod p; products fit in uint64


def normalise(text: str) -> str:
    """Lower-cased, white space collapsed: what 'the same text' means for exact duplicates."""
    return " ".join(text.lower().split())


def text_hash(text: str) -> str:
    return hashlib.sha1(normalise(text).encode()).hexdigest()


def shingles(text: str, n: int) -> frozenset[str]:
    """The set of word n-grams of the normalised text (the whole text when it has fewer than n words)."""
    words = normalise(text).split()
    if len(words) <= n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def exact_duplicates(texts: Sequence[str]) -> list[int | None]:
    """For each text, the index of the first earlier text with the same normalised form, else None."""
    first: dict[str, int] = {}
    out: list[int | None] = []
    for i, text in enumerate(texts):
        h = text_hash(text)
        out.append(first.get(h))
        first.setdefault(h, i)
    return out


def near_duplicates(texts: Sequence[str], threshold: float, n: int) -> list[int | None]:
    """For each text, the first earlier *kept* text it is a near duplicate of (Jaccard >= threshold), else None.
    All pairs: for the k samples of one prompt."""
    sets = [shingles(t, n) for t in texts]
    kept: list[int] = []
    out: list[int | None] = []
    for i, s in enumerate(sets):
        match = next((j for j in kept if jaccard(s, sets[j]) >= threshold), None)
        out.append(match)
        if match is None:
            kept.append(i)
    return out


def _shingle_hashes(s: frozenset[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(x.encode(), digest_size=4).digest(), "little") for x in s],
                    dtype=np.uint64)


def minhash(s: frozenset[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature (num_perm,) of a shingle set under the hash family (a * h + b) mod p."""
    h = _shingle_hashes(s)  # (S,)
    return ((a[:, None] * h[None, :] + b[:, None]) % _PRIME).min(axis=1)  # (P,)


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) with bands * rows = num_perm whose S-curve midpoint (1/bands)^(1/rows) sits a little below the
    threshold, so pairs at the threshold are found with high probability (false candidates are verified away)."""
    pairs = [(num_perm // r, r) for r in range(1, num_perm + 1) if num_perm % r == 0]
    target = 0.8 * threshold
    return min(pairs, key=lambda br: abs((1 / br[0]) ** (1 / br[1]) - target))


def near_duplicates_lsh(texts: Sequence[str], threshold: float, n: int, num_perm: int = 128,
                        seed: int = 0) -> list[int | None]:
    """``near_duplicates`` for a whole file: MinHash + LSH candidates, confirmed by the exact Jaccard."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
    bands, rows = lsh_bands(num_perm, threshold)
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    sets = [shingles(t, n) for t in texts]
    out: list[int | None] = []
    for i, s in enumerate(sets):
        sig = minhash(s, a, b)
        keys = [sig[k * rows : (k + 1) * rows].tobytes() for k in range(bands)]
        candidates = sorted({j for band, key in zip(buckets, keys) for j in band.get(key, ())})
        match = next((j for j in candidates if jaccard(s, sets[j]) >= threshold), None)
        out.append(match)
        if match is None:
            for band, key in zip(buckets, keys):
                band.setdefault(key, []).append(i)
    return out
