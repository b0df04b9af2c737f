"""Process reward models (PRMs): a score in [0, 1] for every step of a partial solution, and how to get one.

- ``TrainedPRM``: a causal-LM backbone with a one-logit token-classification head, read at the last token of each
  step (one forward pass scores every step, as Math-Shepherd reads its step tag). ``monte_carlo_labels`` builds
  its training data the Math-Shepherd way (Wang et al. 2023, arXiv 2312.08935): a step is good when continuations
  rolled out from it reach the right answer ("soft": the share that do, "hard": whether any does), and
  ``train_prm`` fits it with binary cross-entropy.
- ``JudgePRM``: an LLM judge as the step scorer: the probability a language model gives to "Yes" over "No" when
  asked whether the last step is correct (no training).

Search methods aggregate the step scores of a partial solution into one number: ``last`` (the PRM's estimate that
the solution so far will succeed), ``min`` (the weakest step) or ``prod`` (all steps right), as compared by Snell et
al. 2024 (arXiv 2408.03314).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from r1lab.infer.base import InferContext
    from r1lab.parallel import DistContext
    from r1lab.types import Example

AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda scores: scores[-1],
    "min": min,
    "prod": math.prod,
}


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """One score for a partial solution from its per-step scores (an empty solution scores 0)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown step-score aggregation {how!r}; allowed: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[how](step_scores) if step_scores else 0.0


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """The non-blank steps of a solution, split at ``delimiter``."""
    return [s.strip() for s in text.split(delimiter) if s.strip()]


class StepScorer(Protocol):
    def score_steps(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each (question, steps so far): one score in [0, 1] per step."""
        ...


def _pad_batch(rows: list[list[int]], pad_id: int, left: bool):
    """(ids, mask) tensors (B, T) from token lists."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------------------------------
# A trained PRM
# ---------------------------------------------------------------------------------------------------------------
PRM_META = "r1lab_prm.json"


def encode_steps(tokenizer, question: str, steps: Sequence[str], separator: str = "\n") -> tuple[list[int], list[int]]:
    """Token ids of question + steps, and the position of each step's last token (where its score is read).

    Each piece is tokenised on its own so the step ends are exact, the same way in training and scoring.
    """
    ids = list(tokenizer(question.strip() + separator, add_special_tokens=False)["input_ids"])
    ends = []
    for step in steps:
        ids += tokenizer(step.strip() + separator, add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    return ids, ends


class TrainedPRM:
    """A token-classification model (one logit) scoring each step end; ``sigmoid(logit)`` is the step's score."""

    def __init__(self, model, tokenizer, separator: str = "\n", batch_size: int = 16):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.separator, self.batch_size = separator, batch_size

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "TrainedPRM":
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        folder = Path(folder)
        meta = json.loads((folder / PRM_META).read_text()) if (folder / PRM_META).is_file() else {}
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForTokenClassification.from_pretrained(folder).to(device)
        return cls(model, tokenizer, meta.get("separator", "\n"))

    def score_steps(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        from r1lab.algos.logprobs import position_ids_from_mask

        encoded = [encode_steps(self.tokenizer, q, s, self.separator) for q, s in zip(questions, steps)]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        out: list[list[float]] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            ids, mask = _pad_batch([c[0] for c in chunk], pad, left=False)  # (B, T), right-padded
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    position_ids=position_ids_from_mask(mask).to(device)).logits[..., 0]  # (B, T)
            probs = torch.sigmoid(logits.float()).cpu()
            out += [[float(probs[i, e]) for e in ends] for i, (_, ends) in enumerate(chunk)]
        return out


def labelling_seed(seed: int, *parts: Any) -> int:
    """A sampling seed from the run seed and what is sampled (a problem; a solution's step), never from the rank,
    the batch or the call: the labels are then the same at any world size, in any chunking (up to the numerics of
    differently composed batches)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16)


def monte_carlo_labels(examples: list["Example"], ctx: "InferContext", solutions: int = 4, rollouts: int = 4,
                       delimiter: str = "\n", max_steps: int = 8, mode: str = "soft") -> list[dict[str, Any]]:
    """Math-Shepherd step labels: for each sampled solution and each of its steps, roll out ``rollouts``
    continuations from the prefix ending at that step and label the step with the share that reach a correct answer
    (``soft``) or with whether any does (``hard``). The last step's label is the solution's own correctness.
    Sampling is seeded per problem (from ``ctx.seed``, its id and prompt) and per (problem, solution, step) for
    the rollouts (``labelling_seed``).

    Returns records ``{question, steps, labels, correct}``, one per sampled solution with at least one step.
    """
    if mode not in ("soft", "hard"):
        raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
    prompts = [ctx.render(e, None) for e in examples]
    seeds = [labelling_seed(ctx.seed, e.id, p) for e, p in zip(examples, prompts)]
    sampled = ctx.generator.complete(prompts, solutions, ctx.sampling, seeds=seeds)
    records, prefixes = [], []  # prefixes: (record index, step index, prompt text, seed)
    for example, prompt, group in zip(examples, prompts, sampled):
        for j, completion in enumerate(group):
            steps = split_steps(completion.text, delimiter)[:max_steps]
            if not steps:
                continue
            correct = ctx.score(ctx.answer_of(delimiter.join(steps)), example) >= 1.0
            records.append({"question": example.question, "steps": steps, "labels": [None] * len(steps),
                            "correct": correct, "example": example})
            records[-1]["labels"][-1] = 1.0 if correct else 0.0
            for i in range(len(steps) - 1):
                prefixes.append((len(records) - 1, i, prompt + delimiter.join(steps[: i + 1]) + delimiter,
                                 labelling_seed(ctx.seed, example.id, prompt, j, i)))
    if prefixes:
        continued = ctx.generator.complete([p[2] for p in prefixes], rollouts, ctx.sampling,
                                           seeds=[p[3] for p in prefixes])
        for (r, i, _, _), group in zip(prefixes, continued):
            rec = records[r]
            head = delimiter.join(rec["steps"][: i + 1]) + delimiter
            hits = [ctx.score(ctx.answer_of(head + c.text), rec["example"]) >= 1.0 for c in group]
            rec["labels"][i] = (sum(hits) / len(hits)) if mode == "soft" else float(any(hits))
    for rec in records:
        del rec["example"]
    return records


def train_prm(records: list[dict[str, Any]], base_model: str | Path, output_dir: str | Path, epochs: int = 3,
              lr: float = 1e-4, batch_size: int = 8, separator: str = "\n", seed: int = 0,
              on_step: Callable[[int, dict[str, float]], None] | None = None, device: str = "cpu",
              dist: "DistContext | None" = None) -> Path:
    """Fit a PRM on step-labelled records (binary cross-entropy on soft labels at each step end) starting from a
    causal LM folder, and save it as an HF token-classification folder plus ``r1lab_prm.json``. ``on_step(step,
    metrics)`` is called after every optimizer step (loss, step-label accuracy at 0.5, epoch).

    ``dist`` (data-parallel, every rank holding every record): each rank runs its contiguous share of each batch,
    its loss summed over its steps and divided by the batch's labelled steps on all ranks, and the gradients are
    summed over ranks before the step, so every rank takes one process's step. Rank 0 saves the folder.
    """
    import random

    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    from r1lab.models.loading import resolve_model_folder
    from r1lab.parallel import DistContext, all_reduce_gradients, all_reduce_sum, barrier, shard_bounds
    from r1lab.train.optim import build_optimizer

    if not records:
        raise ValueError("train_prm: no labelled solutions to train on")
    dist = dist or DistContext()
    folder = resolve_model_folder(str(base_model))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)  # the fresh head: the same on every rank
    # No dropout before the head (transformers' token-classification default is 0.1): its masks would be drawn per
    # rank's share of the batch, so W ranks would not train one process's weights; the reward model's head has none.
    config = AutoConfig.from_pretrained(folder, num_labels=1)
    config.classifier_dropout = 0.0
    model = AutoModelForTokenClassification.from_pretrained(folder, config=config, dtype=torch.float32).to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    model.config.pad_token_id = pad
    encoded = [(*encode_steps(tokenizer, r["question"], r["steps"], separator), r["labels"]) for r in records]
    steps_total = epochs * math.ceil(len(encoded) / batch_size)
    optimizer, scheduler = build_optimizer(model, lr, 0.0, (0.9, 0.99), steps_total, 0, "constant", 1.0)
    order = list(range(len(encoded)))
    model.train()
    step = 0
    for epoch in range(epochs):
        random.Random(seed + epoch).shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            count = sum(len(c[1]) for c in batch)  # the batch's labelled steps, over all ranks
            lo, hi = shard_bounds(len(batch), dist)
            optimizer.zero_grad(set_to_none=True)
            loss_sum, hits = _prm_backward(model, batch[lo:hi], pad, count, device) if hi > lo else (0.0, 0.0)
            all_reduce_gradients(model, dist)
            optimizer.step()
            scheduler.step()
            step += 1
            loss, hits = all_reduce_sum(dist, [loss_sum, hits])
            if on_step is not None:
                on_step(step, {"train/loss": loss, "train/step_accuracy": hits / count, "train/epoch": epoch})
    output_dir = Path(output_dir)
    if dist.is_main:
        model.save_pretrained(output_dir, safe_serialization=True)
        tokenizer.save_pretrained(output_dir)
        (output_dir / PRM_META).write_text(json.dumps({"kind": "trained", "separator": separator,
                                                       "base_model": str(base_model), "records": len(records)}))
    barrier(dist)  # every rank may read final/ once this returns
    return output_dir


def _prm_backward(model, rows: list[tuple[list[int], list[int], list[float]]], pad: int, count: int,
                  device: str) -> tuple[float, float]:
    """Backward of the BCE summed over ``rows``' labelled steps and divided by ``count`` (the whole batch's steps);
    returns that loss and the number of steps whose score sides with the label."""
    import torch

    from r1lab.algos.logprobs import position_ids_from_mask

    ids, mask = _pad_batch([r[0] for r in rows], pad, left=False)  # (B, T), right-padded
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   position_ids=position_ids_from_mask(mask).to(device)).logits[..., 0]  # (B, T)
    at_rows = torch.tensor([i for i, r in enumerate(rows) for _ in r[1]], device=logits.device)
    at_cols = torch.tensor([e for r in rows for e in r[1]], device=logits.device)
    read = logits[at_rows, at_cols]  # (S,): one logit per labelled step
    targets = torch.tensor([float(y) for r in rows for y in r[2]], dtype=read.dtype, device=read.device)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(read, targets, reduction="sum") / count
    loss.backward()
    hits = ((read.detach() > 0) == (targets > 0.5)).sum()
    return float(loss.detach()), float(hits)


# ---------------------------------------------------------------------------------------------------------------
# An LLM judge as the step scorer
# ---------------------------------------------------------------------------------------------------------------
JUDGE_TEMPLATE = (
    "Question: {question}\n\nSolution so far:\n{steps}\n\nIs the last step of this solution correct? "
    "Reply with Yes or No."
)


class JudgePRM:
    """P("Yes") / (P("Yes") + P("No")) of a causal LM asked whether the last step is correct, for every prefix."""

    def __init__(self, model, tokenizer, template: str = JUDGE_TEMPLATE, batch_size: int = 16):
        self.model, self.tokenizer, self.template, self.batch_size = model.eval(), tokenizer, template, batch_size
        yes, no = self._first_ids(("Yes", " Yes", "yes", " yes")), self._first_ids(("No", " No", "no", " no"))
        # a token both spellings start with (a lone space in character-level vocabularies) tells nothing apart
        self.yes, self.no = sorted(set(yes) - set(no)), sorted(set(no) - set(yes))
        if not self.yes or not self.no:
            raise ValueError("judge PRM: this tokenizer gives 'Yes' and 'No' no distinct first token")

    def _first_ids(self, words: Sequence[str]) -> list[int]:
        return sorted({self.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words})

    def _prompt(self, question: str, steps: Sequence[str]) -> str:
        text = self.template.format(question=question, steps="\n".join(steps))
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                      tokenize=False)
        return text + "\nAnswer:"

    def score_steps(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        from r1lab.algos.logprobs import position_ids_from_mask

        prompts = [(k, self._prompt(q, s[: i + 1])) for k, (q, s) in enumerate(zip(questions, steps))
                   for i in range(len(s))]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        values: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            rows = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for _, p in chunk]
            ids, mask = _pad_batch(rows, pad, left=True)  # (B, T), left-padded: the next token is at the end
            with torch.no_grad():
                result = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    position_ids=position_ids_from_mask(mask).to(device))
            logits = result.logits[:, -1].float()  # (B, V): the next token after each prompt
            logp = torch.log_softmax(logits, dim=-1).cpu()
            yes, no = torch.logsumexp(logp[:, self.yes], dim=-1), torch.logsumexp(logp[:, self.no], dim=-1)  # (B,)
            values += torch.sigmoid(yes - no).tolist()
        out: list[list[float]] = [[] for _ in questions]
        for (k, _), v in zip(prompts, values):
            out[k].append(v)
        return out


# ---------------------------------------------------------------------------------------------------------------
# From a method's ``prm`` parameter to a scorer
# ---------------------------------------------------------------------------------------------------------------
PRM_DEFAULTS = {"kind": "judge", "model": None, "template": JUDGE_TEMPLATE, "device": "cpu"}


def build_prm(spec: dict, ctx: "InferContext") -> StepScorer:
    """``ctx.prm`` when set (tests, callers with their own scorer); else from ``spec``: ``{kind: judge, model}``
    (default model: the one being evaluated) or ``{kind: trained, model: FOLDER}`` (from ``train_prm``)."""
    if ctx.prm is not None:
        return ctx.prm
    unknown = sorted(set(spec) - set(PRM_DEFAULTS))
    if unknown:
        raise ValueError(f"prm: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(PRM_DEFAULTS)}")
    p = {**PRM_DEFAULTS, **spec}
    if p["kind"] == "trained":
        if not p["model"]:
            raise ValueError("prm: kind 'trained' needs model: the folder written by r1lab.infer.prm.train_prm")
        return TrainedPRM.load(p["model"], p["device"])
    if p["kind"] == "judge":
        name = p["model"] or ctx.model_name
        if not name:
            raise ValueError("prm: kind 'judge' needs model (a causal LM r1lab can load)")
        return _judge_for(str(name), p["template"], p["device"])
    raise ValueError(f"prm: unknown kind {p['kind']!r}; allowed: judge, trained")


_JUDGES: dict[tuple, JudgePRM] = {}


def _judge_for(name: str, template: str, device: str) -> JudgePRM:
    """One judge model per (name, device) per process."""
    key = (name, template, device)
    if key not in _JUDGES:
        from r1lab.models.loading import load_model

        loaded = load_model(name, device=device)
        _JUDGES[key] = JudgePRM(loaded.model, loaded.tokenizer, template)
    return _JUDGES[key]
