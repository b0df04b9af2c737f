"""Tasks that mix sources, and the general (non-reasoning) prompt task.

The last RL stage of DeepSeek-R1 (arXiv 2501.12948, Sec. 2.3.4) trains on "all scenarios" at once: prompts with a
rule-checkable answer (math, code, logic) and general prompts (writing, QA) scored by reward models. ``mix`` builds
one training stream from several tasks, each example keeping its source in ``meta`` so the mixed scorer delegates
to that source's verifier; ``general`` is the built-in general prompts, whose examples have no answer (``None``),
so rewards routed with ``rewards.apply_to`` know which examples a rule can check.

``task.name=mix`` with ``task.params={sources: [{name: rg:basic_arithmetic, params: {...}, weight: 0.7,
eval_size: 100}, {name: general, weight: 0.3}]}``. Each source is loaded exactly as ``task.name=NAME`` with the
same ``task.seed`` would be, so a source with the eval_size of a single-task run has that run's held-out set (and
its training problems exclude it).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from r1lab.data.jsonl import jsonl_rows
from r1lab.rewards.combine import is_verifiable
from r1lab.tasks.base import Task, split_task
from r1lab.types import Example

SOURCE_KEYS = ("name", "params", "weight", "eval_size")


# --- general prompts --------------------------------------------------------------------------------------------
def read_general_prompts(path: str | Path) -> list[Example]:
    """Rows ``{"prompt": str, ...}`` (or chat ``messages``); any other field goes to ``meta``. Answers are None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"general prompts file not found: {path}")
    examples = []
    for lineno, row in jsonl_rows(path, ValueError):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict) or not (isinstance(row.get("prompt"), str)
                                             or isinstance(row.get("messages"), list)):
            raise ValueError(f"{where}: needs field 'prompt' (a string) or 'messages' (a list of turns)")
        meta = {k: v for k, v in row.items() if k not in ("prompt", "messages", "answer")}
        examples.append(Example(id=f"general/{lineno}", answer=None, prompt=row.get("prompt"),
                                messages=row.get("messages"), meta=meta))
    if not examples:
        raise ValueError(f"{path}: no prompts")
    return examples


def _no_verifier(answer: str, example: Example) -> float:
    # Raising (not returning 0) marks the sample unscorable: a rule reward must not judge a general prompt.
    raise ValueError(f"example {example.id} is a general prompt with no verifiable answer; score it with the "
                     f"reward_model reward and route rules away with rewards.apply_to")


def load_general_task(name: str, seed: int, eval_size: int | None, split: str = "held_out") -> Task:
    """``general`` (the built-in prompts, CC0) or ``general:FILE``; ``eval_size`` prompts are held out (``split``
    as in ``split_task``)."""
    from r1lab.data.preferences import builtin_path

    path = builtin_path("general_prompts.jsonl") if name == "general" else Path(name.split(":", 1)[1])
    return split_task(name, read_general_prompts(path), seed, eval_size, _no_verifier, split)


# --- mixture ------------------------------------------------------------------------------------------------------
def check_sources(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The validated ``sources`` list of ``task.params`` (errors name the source and the key)."""
    unknown = sorted(set(params) - {"sources"})
    if unknown:
        raise ValueError(f"task mix: unknown task.params key(s) {', '.join(unknown)}; allowed: sources")
    sources = params.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ValueError("task mix: task.params.sources must be a non-empty list of {name, params, weight}")
    out = []
    for i, src in enumerate(sources):
        where = f"task mix: task.params.sources[{i}]"
        if not isinstance(src, dict) or not isinstance(src.get("name"), str):
            raise ValueError(f"{where}: needs 'name' (a task name, e.g. rg:basic_arithmetic or general)")
        bad = sorted(set(src) - set(SOURCE_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown key(s) {', '.join(bad)}; allowed: {', '.join(SOURCE_KEYS)}")
        if src["name"] == "mix":
            raise ValueError(f"{where}: a mix cannot contain a mix")
        weight = src.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ValueError(f"{where}: weight must be a number > 0, got {weight!r}")
        params_ = src.get("params") or {}
        if not isinstance(params_, dict):
            raise ValueError(f"{where}: params must be a mapping, got {params_!r}")
        eval_size = src.get("eval_size")
        if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 1):
            raise ValueError(f"{where}: eval_size must be an integer >= 1, got {eval_size!r}")
        out.append({"name": src["name"], "params": params_, "weight": float(weight), "eval_size": eval_size})
    return out


def _shares(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder), at least 1 each."""
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: total - sum(counts)]:
        counts[i] += 1
    return [max(1, c) for c in counts]


def _tagged(example: Example, index: int, source: str, repeat: int) -> Example:
    suffix = f"#{repeat}" if repeat else ""
    return Example(id=f"mix{index}/{example.id}{suffix}", answer=example.answer, prompt=example.prompt,
                   messages=example.messages, meta={**example.meta, "source": source, "source_index": index})


def load_mix_task(params: dict[str, Any], seed: int, train_size: int, eval_size: int) -> Task:
    """Sources get ``train_size`` training examples in proportion to their weights (a source with fewer problems,
    such as the 100 general prompts, is cycled to its share). A source holds out its own ``eval_size`` problems, or
    its weight's share of ``eval_size``; the mixed held-out set is the verifiable sources' held-out problems
    (accuracy needs an answer), while general held-out prompts are only kept out of training."""
    from r1lab.tasks import load_task

    sources = check_sources(params)
    weights = [s["weight"] for s in sources]
    train_counts = _shares(train_size, weights)
    eval_counts = [s["eval_size"] or n for s, n in zip(sources, _shares(eval_size, weights))]
    tasks = []
    for i, (src, n_train, n_eval) in enumerate(zip(sources, train_counts, eval_counts)):
        try:
            tasks.append(load_task(src["name"], src["params"], seed, n_train, n_eval))
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"task mix: sources[{i}] ({src['name']}): {err}") from None
    train, held_out = [], []
    for i, (src, task, n_train) in enumerate(zip(sources, tasks, train_counts)):
        train += [_tagged(task.train[j % len(task.train)], i, src["name"], j // len(task.train))
                  for j in range(n_train)]
        if all(is_verifiable(e) for e in task.eval):
            held_out += [_tagged(e, i, src["name"], 0) for e in task.eval]
    # Keep the sources interleaved in a fixed order, so the first N prompts (r1lab generate) are a mix too.
    random.Random(seed).shuffle(train)

    def scorer(answer: str, example: Example) -> float:
        return tasks[example.meta["source_index"]].score(answer, example)

    return Task(name="mix", train=train, eval=held_out, scorer=scorer)
