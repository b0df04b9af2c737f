"""Generating n samples per prompt, with a cache so re-scoring (a new metric, another k) never regenerates.

Cache layout: one JSONL file per *setting* (model fingerprint, dtype, device, sampling settings, n, seed), named by
a hash of that setting, with one line per prompt keyed by the hash of the full prompt text. The prompt text holds
the task's question and the prompt variant (template, system prompt, few-shot shots), so the key is (model, task,
prompt variant, sampling, n, seed) without the task having to be named. Lines are appended as chunks finish, so an
interrupted evaluation resumes where it stopped; a torn last line is ignored.

Under torchrun / srun the chunks of prompts to generate are dealt to the ranks in rounds (chunk r * W + k to rank
k); a chunk is generated exactly as one process would generate it (same prompts, same seed from its first
prompt), so the samples do not depend on the world size. After each round the ranks gather the round's
generations and rank 0 alone appends them to the cache file: one writer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from r1lab.parallel import DistContext, all_gather_objects
from r1lab.rollout.base import RolloutEngine, SamplingParams


@dataclass
class Generation:
    """The n samples of one prompt."""

    texts: list[str]
    lengths: list[int]  # generated tokens per sample (the EOS token included when generated)
    truncated: list[bool]
    prompt_tokens: int


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_files(folder: str | Path) -> list[str]:
    """``name:size:mtime_ns`` of each file directly in ``folder``, sorted: what changes when a file is rewritten."""
    entries = []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            stat = path.stat()
            entries.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return entries


def model_fingerprint(folder: str | Path) -> str:
    """Identifies a model folder's contents cheaply: its path and each file's name, size and modification time
    (a checkpoint rewritten in place gets a new fingerprint)."""
    folder = Path(folder).resolve()
    return _sha("\n".join([str(folder), *folder_files(folder)]))[:16]


def files_digest(folder: str | Path) -> str:
    """``model_fingerprint`` without the folder's path: a folder moved or copied with its times (cp -p,
    shutil.copytree) keeps its digest."""
    return _sha("\n".join(folder_files(folder)))[:16]


def setting_key(setting: dict) -> str:
    """The file name stem of a cache for ``setting`` (a hash of its sorted JSON)."""
    return _sha(json.dumps(setting, sort_keys=True))[:20]


class GenerationCache:
    """Prompt -> Generation for one setting; ``folder=None`` disables caching (nothing read or written)."""

    def __init__(self, folder: str | Path | None, setting: dict):
        self.setting = setting
        self.key = setting_key(setting)
        self.path = Path(folder) / f"{self.key}.jsonl" if folder is not None else None
        self._items: dict[str, Generation] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a kill mid-write
                    continue
                self._items[row["prompt_sha"]] = Generation(row["texts"], row["lengths"], row["truncated"],
                                                            row["prompt_tokens"])

    def get(self, prompt: str) -> Generation | None:
        return self._items.get(_sha(prompt))

    def put(self, prompt: str, generation: Generation, write: bool = True) -> None:
        """Remember ``generation``; ``write``: also append it to the cache file (rank 0 only under torchrun)."""
        key = _sha(prompt)
        self._items[key] = generation
        if self.path is None or not write:
            return
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.with_suffix(".setting.json").write_text(json.dumps(self.setting, indent=2, sort_keys=True))
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"prompt_sha": key, **asdict(generation)}) + "\n")


def chunk_seed(seed: int, first_prompt: str) -> int:
    """The torch seed of one generation chunk: fixed by the run seed and the chunk's first prompt, so a resumed
    evaluation regenerates a chunk exactly as a straight run would have."""
    return int(_sha(f"{seed}:{first_prompt}")[:8], 16)


def generate_cached(prompts: list[str], n: int, sampling: SamplingParams, cache: GenerationCache,
                    engine: Callable[[], RolloutEngine], batch_size: int, seed: int,
                    progress: bool = True, dist: DistContext | None = None) -> list[Generation]:
    """The n samples of every prompt, generating only the prompts the cache lacks.

    ``engine`` is a factory, called only when something must be generated (a fully cached evaluation never loads
    the model). Prompts go ``batch_size // n`` at a time (whole groups per call). ``dist``: the ranks share the
    chunks (see the module's docstring); every rank returns every prompt's generation.
    """
    dist = dist or DistContext()
    missing = list(dict.fromkeys(p for p in prompts if cache.get(p) is None))
    if missing:
        from r1lab.track.progress import Progress

        per_call = max(1, batch_size // n)
        chunks = [missing[i : i + per_call] for i in range(0, len(missing), per_call)]
        W = dist.world_size
        bar = Progress(total=len(missing), enabled=progress and dist.is_main,
                       desc=f"generating {n} x {len(missing)} prompts")
        done = 0
        for first in range(0, len(chunks), W):  # one round: a chunk per rank
            mine = first + dist.rank
            made = _generate_chunk(engine(), chunks[mine], n, sampling, seed) if mine < len(chunks) else []
            for part in all_gather_objects(dist, made):  # rank order = chunk order
                for prompt, generation in part:
                    cache.put(prompt, generation, write=dist.is_main)
                    done += 1
            bar.update(done)
        bar.close()
    return [cache.get(p) for p in prompts]


def _generate_chunk(generator: RolloutEngine, chunk: list[str], n: int, sampling: SamplingParams,
                    seed: int) -> list[tuple[str, Generation]]:
    import torch

    torch.manual_seed(chunk_seed(seed, chunk[0]))  # from the chunk's first prompt, never from the rank
    batch = generator.generate(chunk, n=n, sampling=sampling)
    lengths = batch.lengths.long().tolist()
    truncated = batch.truncated.tolist()
    prompt_tokens = batch.prompt_mask.sum(dim=1).long().tolist()
    return [(prompt, Generation(batch.texts[i * n : (i + 1) * n], lengths[i * n : (i + 1) * n],
                                [bool(t) for t in truncated[i * n : (i + 1) * n]], int(prompt_tokens[i * n])))
            for i, prompt in enumerate(chunk)]
