"""Text-level generation for inference methods: stop strings and per-prompt token caps over any RolloutEngine.

Methods continue partial responses (a beam's steps, a thought extended with "Wait"), stop at a delimiter
(``</think>``, a step break) and cap each prompt at its own token budget. ``EngineGenerator`` gives any
``RolloutEngine`` these on the decoded text: a response is cut right after the first stop string, and its token
count is the number of generated tokens up to and including the token that completed the stop string (what an
engine with native stop strings would have generated). Tokens an engine generates past the stop or the cap are
discarded and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass
class Completion:
    text: str  # generated text, cut after the stop string when one was hit (the stop string included)
    tokens: int  # generated tokens kept
    finish: str  # "stop" (a stop string), "eos" (the model ended), "length" (the token cap)
    stop: str | None = None  # which stop string


class TextGenerator(Protocol):
    def complete(self, prompts: Sequence[str], n: int, sampling, stop: Sequence[str] = (),
                 max_tokens: Sequence[int] | None = None, seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """n completions per prompt; ``max_tokens[i]`` caps prompt i (default: ``sampling.max_new_tokens``);
        ``seeds[i]``: prompt i's sampling seed (``RolloutEngine.generate``), None: the engine's own RNG."""
        ...


def _first_stop(text: str, stop: Sequence[str]) -> tuple[int, str] | None:
    """(end index of the earliest stop string, that string), or None."""
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return None
    pos, s = min(hits)
    return pos + len(s), s


class EngineGenerator:
    """A ``TextGenerator`` over a ``RolloutEngine`` (e.g. ``NativeEngine``) and its tokenizer."""

    def __init__(self, engine, tokenizer):
        self.engine = engine
        self.tokenizer = tokenizer
        self.calls = 0  # generate calls made (tests and cost accounting)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def complete(self, prompts: Sequence[str], n: int, sampling, stop: Sequence[str] = (),
                 max_tokens: Sequence[int] | None = None, seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        import dataclasses

        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        caps = list(max_tokens) if max_tokens is not None else [sampling.max_new_tokens] * len(prompts)
        if len(caps) != len(prompts):
            raise ValueError(f"{len(caps)} token caps for {len(prompts)} prompts")
        if not prompts:
            return []
        if min(caps) < 1:
            raise ValueError(f"token caps must be >= 1, got {min(caps)}")
        widest = dataclasses.replace(sampling, max_new_tokens=max(caps))
        batch = self.engine.generate(list(prompts), n=n, sampling=widest,
                                     seeds=None if seeds is None else list(seeds))
        self.calls += 1
        lengths = batch.lengths.long().tolist()
        truncated = batch.truncated.tolist()
        out: list[list[Completion]] = []
        for i in range(len(prompts)):
            group = []
            for row in range(i * n, (i + 1) * n):
                ids = batch.completion_ids[row, : lengths[row]].tolist()
                group.append(self._cut(ids, batch.texts[row], bool(truncated[row]), caps[i], stop))
            out.append(group)
        return out

    def _cut(self, ids: list[int], text: str, truncated: bool, cap: int, stop: Sequence[str]) -> Completion:
        finish = "length" if truncated else "eos"
        if len(ids) > cap:  # this prompt's own cap is below the batch's: keep its first `cap` tokens
            ids, finish = ids[:cap], "length"
            text = self._decode(ids)
        hit = _first_stop(text, stop)
        if hit is None:
            return Completion(text, len(ids), finish)
        end, which = hit
        # The shortest token prefix whose text holds the stop string (containment only grows with the prefix).
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if which in self._decode(ids[:mid]):
                hi = mid
            else:
                lo = mid + 1
        return Completion(text[:end], lo, "stop", which)


class CachedGenerator:
    """A ``TextGenerator`` that replays earlier runs: each call is keyed by its place in the run's call sequence
    and its arguments (prompts, n, sampling, stops, caps), and its completions are appended to a JSONL file.

    Every call seeds torch from (seed, key) before generating, so a call's completions depend only on its key:
    re-running a method with the same settings replays from the file without loading the model, a run cut short
    resumes exactly, and a changed parameter regenerates from the first call that differs. ``path=None`` caches
    nothing (the per-call seeding still applies). ``make_inner`` is called on the first miss only.
    """

    def __init__(self, make_inner, path=None, seed: int = 0, rank: int = 0):
        import json
        from pathlib import Path

        self._make_inner, self._inner = make_inner, None
        self.path = Path(path) if path is not None else None
        self.seed, self.index, self.scope = seed, 0, None
        self.hits = self.calls = 0  # replayed calls; calls that generated
        self._items: dict[str, list[list[dict]]] = {}
        if self.path is not None:
            # data-parallel ranks append to their own files (rank 0 to ``path``); every rank replays from all of
            # them, so a cache made at one world size serves any other
            for part in [self.path, *sorted(self.path.parent.glob(f"{self.path.stem}.rank*{self.path.suffix}"))]:
                if not part.is_file():
                    continue
                for line in part.read_text(encoding="utf-8").splitlines():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line torn by a kill mid-write
                        continue
                    self._items[row["key"]] = row["groups"]
            if rank:
                self.path = self.path.with_name(f"{self.path.stem}.rank{rank}{self.path.suffix}")

    def begin(self, scope: int) -> None:
        """Key the next calls by ``scope`` (a chunk of problems) and their place within it, instead of their place in
        the whole run: a chunk's calls then do not depend on which rank runs it, nor on the chunks before it."""
        self.scope, self.index = scope, 0

    def complete(self, prompts: Sequence[str], n: int, sampling, stop: Sequence[str] = (),
                 max_tokens: Sequence[int] | None = None, seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        import dataclasses
        import hashlib
        import json

        import torch

        caps = list(max_tokens) if max_tokens is not None else None
        place = self.index if self.scope is None else [self.scope, self.index]
        request = [place, list(prompts), n, dataclasses.asdict(sampling), list(stop), caps]
        if seeds is not None:  # keys of calls without seeds stay as they were
            request.append(list(seeds))
        key = hashlib.sha256(json.dumps(request).encode("utf-8")).hexdigest()
        self.index += 1
        if key in self._items:
            self.hits += 1
            return [[Completion(**c) for c in group] for group in self._items[key]]
        if self._inner is None:
            self._inner = self._make_inner()
        torch.manual_seed(int(hashlib.sha256(f"{self.seed}:{key}".encode()).hexdigest()[:8], 16))
        out = self._inner.complete(prompts, n, sampling, stop, max_tokens, seeds)
        self.calls += 1
        groups = [[dataclasses.asdict(c) for c in group] for group in out]
        self._items[key] = groups
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "groups": groups}) + "\n")
        return out
