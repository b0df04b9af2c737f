"""Evaluation metrics over n samples per problem: pure functions of plain data (no model, no task objects).

* pass@1 averaged over the n samples, and the unbiased pass@k estimator of the Codex paper (Chen et al. 2021,
  arXiv 2107.03374, eq. 1) in its numerically stable product form;
* maj@k (self-consistency, Wang et al. 2022; the R1 report's cons@64) over answer *clusters*: answers the task's
  verifier considers equal vote together (see ``r1lab.evals.answers``), with a defined tie-break;
* format compliance, response length (all / correct / wrong), tokens per correct answer, cost per 1,000 questions,
  and the frequency of reflection words ("wait", "let me check", ...), the R1 report's "aha moment" signal.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

# The R1 report's "aha moment" vocabulary plus common self-verification phrases. Matched case-insensitively as
# whole words; the longest phrase wins where phrases overlap ("let me verify" is not also counted as "verify").
DEFAULT_REFLECTION_WORDS = (
    "wait", "hmm", "let me check", "let me verify", "let me re-check", "double-check", "verify", "check again",
    "re-evaluate", "reconsider", "on second thought", "actually", "mistake",
)


# ---------------------------------------------------------------------------------------------------------------
# pass@k
# ---------------------------------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from n samples of which c are correct.

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) so no huge binomials are formed
    (Chen et al. 2021, Codex, Figure 3).
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float | None:
    """pass@k averaged over problems given (n, c) per problem; problems with fewer than k samples are left out
    (None when none is left)."""
    values = [pass_at_k(n, c, k) for n, c in counts if n >= k]
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------------------------------------------------------
# Clustering and majority vote
# ---------------------------------------------------------------------------------------------------------------
def cluster_answers(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> list[int | None]:
    """Cluster id per answer (None for "no answer"): answer j joins the first cluster whose representative r
    (its earliest member) satisfies ``same(answer_j, r)``; identical strings are equal without asking ``same``.

    Cluster ids are numbered by first appearance, so cluster 0 holds the first answer.
    """
    ids: list[int | None] = []
    representatives: list[str] = []
    by_text: dict[str, int] = {}
    for answer in answers:
        if answer is None:
            ids.append(None)
            continue
        key = answer.strip()
        if key not in by_text:
            match = next((c for c, rep in enumerate(representatives) if same(answer, rep)), None)
            if match is None:
                match = len(representatives)
                representatives.append(answer)
            by_text[key] = match
        ids.append(by_text[key])
    return ids


def vote(cluster_ids: Sequence[int | None]) -> int | None:
    """The majority cluster among votes in sample order; None votes abstain.

    Tie-break: among clusters with the most votes, the one whose first vote comes earliest wins (what a deployed
    voter reading answers in arrival order would return). None when every vote abstains.
    """
    counts = Counter(c for c in cluster_ids if c is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(c for c in cluster_ids if c is not None and counts[c] == top)


def maj_at_k(cluster_ids: Sequence[int | None], cluster_correct: dict[int, bool], k: int,
             max_subsets: int = 256, seed: int = 0) -> float:
    """Expected correctness of the majority answer of k samples drawn from the n available, for one problem.

    Exact (every k-subset, in sample order) when there are at most ``max_subsets`` subsets, else the mean over
    ``max_subsets`` seeded random subsets. With k = n this is the vote over all samples (the R1 report's cons@n).
    A vote won by no cluster (every sample abstained) is wrong.
    """
    n = len(cluster_ids)
    if not 1 <= k <= n:
        raise ValueError(f"maj@k: need 1 <= k <= n, got k={k}, n={n}")
    if math.comb(n, k) <= max_subsets:
        subsets: Sequence[Sequence[int]] = list(itertools.combinations(range(n), k))
    else:
        rng = random.Random(seed * 1_000_003 + k)
        subsets = [sorted(rng.sample(range(n), k)) for _ in range(max_subsets)]
    wins = 0
    for subset in subsets:
        winner = vote([cluster_ids[i] for i in subset])
        wins += winner is not None and cluster_correct.get(winner, False)
    return wins / len(subsets)


def cluster_correctness(cluster_ids: Sequence[int | None], correct: Sequence[bool]) -> dict[int, bool]:
    """A cluster is correct when its representative (earliest member) is correct."""
    out: dict[int, bool] = {}
    for cid, ok in zip(cluster_ids, correct):
        if cid is not None and cid not in out:
            out[cid] = bool(ok)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Length, cost, reflection
# ---------------------------------------------------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def length_stats(lengths: Sequence[int], correct: Sequence[bool]) -> dict[str, float | None]:
    """Mean response length in tokens over all responses, the correct ones and the wrong ones (None if empty)."""
    return {
        "mean_length": _mean(lengths),
        "mean_length_correct": _mean([n for n, ok in zip(lengths, correct) if ok]),
        "mean_length_wrong": _mean([n for n, ok in zip(lengths, correct) if not ok]),
    }


def tokens_per_correct(lengths: Sequence[int], correct: Sequence[bool]) -> float | None:
    """Generated tokens spent per correct answer: all tokens / number of correct responses (None when none)."""
    hits = sum(bool(c) for c in correct)
    return sum(lengths) / hits if hits else None


def cost_per_1k(mean_input_tokens: float, mean_output_tokens: float, price_input: float, price_output: float) -> float:
    """Cost of answering 1,000 questions once each, with prices per million input / output tokens."""
    return 1000 * (mean_input_tokens * price_input + mean_output_tokens * price_output) / 1e6


def reflection_pattern(words: Sequence[str]) -> re.Pattern:
    """One alternation, longest phrase first, whole words, any run of spaces inside a phrase."""
    if not words:
        raise ValueError("reflection words: the list is empty")
    ordered = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    parts = [r"\s+".join(re.escape(token) for token in phrase.split()) for phrase in ordered]
    return re.compile(r"(?<![\w-])(?:" + "|".join(parts) + r")(?![\w-])", re.IGNORECASE)


def reflection_counts(text: str, pattern: re.Pattern) -> Counter:
    """Occurrences of each reflection phrase in ``text`` (keys lower-cased, single-spaced)."""
    return Counter(" ".join(m.group(0).lower().split()) for m in pattern.finditer(text))


def reflection_stats(texts: Sequence[str], words: Sequence[str] = DEFAULT_REFLECTION_WORDS) -> dict:
    """``reflection_rate``: reflection phrases per response; ``reflection_share``: share of responses with at
    least one; ``reflection_words``: per-phrase occurrences per response."""
    pattern = reflection_pattern(words)
    per_text = [reflection_counts(t, pattern) for t in texts]
    total = sum(per_text, Counter())
    n = max(len(texts), 1)
    return {
        "reflection_rate": sum(total.values()) / n,
        "reflection_share": sum(1 for c in per_text if c) / n,
        "reflection_words": {w: total[w] / n for w in sorted(total)},
    }


# ---------------------------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One scored response. ``valid`` is False when the verifier could not score it (left out of every rate)."""

    text: str
    length: int  # generated tokens
    prompt_tokens: int
    correct: bool = False
    valid: bool = True
    cluster: int | None = None  # answer cluster within its problem; None = no answer extracted
    formatted: bool = False
    truncated: bool = False


def summarize(problems: Sequence[Sequence[Sample]], ks: Sequence[int], price_input: float = 0.55,
              price_output: float = 2.19, reflection_words: Sequence[str] = DEFAULT_REFLECTION_WORDS,
              max_subsets: int = 256, seed: int = 0) -> dict:
    """All metrics of one evaluation: ``problems[i]`` holds the samples of problem i.

    Invalid samples (the verifier failed) are counted in ``score_errors`` and left out: a problem's n is its
    number of valid samples, and pass@k / maj@k average over the problems with at least k of them.
    """
    valid = [[s for s in samples if s.valid] for samples in problems]
    flat = [s for samples in valid for s in samples]
    counts = [(len(samples), sum(s.correct for s in samples)) for samples in valid]
    out: dict = {"num_problems": len(problems), "num_samples": sum(len(p) for p in problems),
                 "score_errors": sum(len(p) for p in problems) - len(flat)}
    per_problem = [c / n for n, c in counts if n]
    out["pass@1"] = _mean(per_problem)
    for k in ks:
        out[f"pass@{k}"] = mean_pass_at_k(counts, k)
    for k in ks:
        majs = []
        for samples in valid:
            if len(samples) >= k:
                ids = [s.cluster for s in samples]
                majs.append(maj_at_k(ids, cluster_correctness(ids, [s.correct for s in samples]), k, max_subsets, seed))
        out[f"maj@{k}"] = _mean(majs)
    lengths, correct = [s.length for s in flat], [s.correct for s in flat]
    out["format_rate"] = _mean([float(s.formatted) for s in flat])
    out["extract_rate"] = _mean([float(s.cluster is not None) for s in flat])
    out["truncated_rate"] = _mean([float(s.truncated) for s in flat])
    out.update(length_stats(lengths, correct))
    out["tokens_per_correct"] = tokens_per_correct(lengths, correct)
    mean_prompt = _mean([s.prompt_tokens for s in flat]) or 0.0
    out["mean_prompt_tokens"] = mean_prompt
    out["cost_per_1k"] = cost_per_1k(mean_prompt, out["mean_length"] or 0.0, price_input, price_output)
    out.update(reflection_stats([s.text for s in flat], reflection_words))
    return out
