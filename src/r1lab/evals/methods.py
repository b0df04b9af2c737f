"""``r1lab eval --method NAME``: an inference-time method (r1lab.infer) answers each held-out problem; scored by
accuracy and by the tokens it generated. Its generate calls are cached by ``CachedGenerator`` (keyed by their place
in the call sequence and their arguments), so re-running a method, or adding a metric, replays without the model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from r1lab.evals.metrics import reflection_stats, tokens_per_correct


def method_metrics(answers, examples, ctx, price_input: float, price_output: float,
                   reflection_words) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """accuracy, mean generated tokens per problem, tokens per correct answer and cost per 1,000 questions."""
    from r1lab.rewards.functions import format_reward

    records, correct, errors = [], [], 0
    for example, a in zip(examples, answers):
        error = None
        try:
            score = ctx.score(a.answer, example)
        except Exception as err:  # noqa: BLE001 - counted, never scored 0 (docs/architecture.md principle 6)
            score, error = None, f"{type(err).__name__}: {err}"
            errors += 1
        ok = score is not None and score >= 1.0
        correct.append(ok)
        records.append({"problem_id": example.id, "answer": a.answer, "gold": example.answer, "score": score,
                        "correct": ok, "error": error, "tokens": a.tokens, "candidates": a.candidates,
                        "formatted": format_reward(a.text, example, None) == 1.0, "completion": a.text,
                        "info": a.info})
    valid = [r for r in records if r["error"] is None]
    n = max(len(valid), 1)
    tokens = [a.tokens for a in answers]
    mean_tokens = sum(tokens) / max(len(tokens), 1)
    prompt_tokens = [len(ctx.tokenizer(ctx.render(e, None), add_special_tokens=False)["input_ids"]) for e in examples]
    mean_prompt = sum(prompt_tokens) / max(len(prompt_tokens), 1)
    metrics = {
        "accuracy": sum(r["correct"] for r in valid) / n,
        "mean_score": sum(r["score"] for r in valid) / n,
        "mean_tokens": mean_tokens,
        "tokens_per_correct": tokens_per_correct(tokens, correct),
        "mean_candidates": sum(a.candidates for a in answers) / max(len(answers), 1),
        "extract_rate": sum(a.answer is not None for a in answers) / max(len(answers), 1),
        "format_rate": sum(r["formatted"] for r in records) / max(len(records), 1),
        "mean_prompt_tokens": mean_prompt,
        # one prompt read per problem plus every generated token: a lower bound when a method re-reads prompts
        "cost_per_1k": 1000 * (mean_prompt * price_input + mean_tokens * price_output) / 1e6,
        "score_errors": errors,
        "num_problems": len(examples),
    }
    metrics.update(reflection_stats([a.text for a in answers], reflection_words))
    return metrics, records


def run_method(cfg, task, tokenizer, engine: Callable[[], Any], run_dir: Path,
               cache_path: Path | None = None, dist=None) -> dict[str, Any] | None:
    import dataclasses

    import torch

    from r1lab.config import to_dict
    from r1lab.evals.prompts import base_prompt, few_shot_example, pick_shots
    from r1lab.evals.runner import task_params
    from r1lab.infer import METHODS, InferContext
    from r1lab.infer.generation import CachedGenerator, EngineGenerator
    from r1lab.models.templates import build_prompt
    from r1lab.rollout.base import SamplingParams
    from r1lab.track.progress import Progress

    started = time.monotonic()
    s, prompt = cfg.sampling, base_prompt(cfg)
    shots = pick_shots(task.train, prompt.few_shot, cfg.task.seed)

    def render(example, instruction: str | None) -> str:
        chosen = prompt if instruction is None else dataclasses.replace(prompt, instruction=instruction)
        return build_prompt(few_shot_example(example, shots, chosen), tokenizer, chosen.template, chosen.system,
                            chosen.instruction)

    from r1lab.parallel.context import DistContext, all_gather_objects, all_reduce_sum

    dist = dist or DistContext()
    generator = CachedGenerator(lambda: EngineGenerator(engine(), tokenizer), cache_path, seed=s.seed, rank=dist.rank)
    ctx = InferContext(generator=generator, render=render, task=task,
                       sampling=SamplingParams(s.temperature, s.top_p, s.top_k, s.max_new_tokens),
                       extraction=tuple(cfg.metrics.extraction), tokenizer=tokenizer, model_name=cfg.model.name,
                       progress=cfg.log.progress, seed=s.seed)
    method = METHODS.get(cfg.method.name)
    examples = task.eval
    per_call = max(1, s.batch_size // 8)  # problems per method call: the progress bar moves, the batches stay full
    starts = list(range(0, len(examples), per_call))
    bar = Progress(total=len(examples), enabled=cfg.log.progress and dist.is_main, desc=cfg.method.name)
    answers = []
    # Data-parallel: the chunks are dealt to the ranks in rounds. A chunk is seeded and its generator calls keyed
    # from its first problem alone, so its answers are the same whichever rank runs it, and at any world size.
    for first in range(0, len(starts), dist.world_size):
        mine = first + dist.rank
        made = []
        if mine < len(starts):
            start = starts[mine]
            torch.manual_seed(s.seed * 1_000_003 + start)
            generator.begin(start)
            made = method(examples[start : start + per_call], ctx, dict(cfg.method.params))
        for part in all_gather_objects(dist, made):  # rank order = chunk order
            answers += part
        bar.update(min(len(examples), (first + dist.world_size) * per_call))
    bar.close()
    calls, hits = (int(v) for v in all_reduce_sum(dist, [generator.calls, generator.hits]))
    if not dist.is_main:  # rank 0 scores and writes
        return None
    m = cfg.metrics
    metrics, records = method_metrics(answers, examples, ctx, m.price_input, m.price_output, m.reflection_words)
    defaults = getattr(method, "param_defaults", {})
    results = {
        "model": cfg.model.name, "task": cfg.task.name, "task_params": task_params(cfg.task),
        "task_seed": cfg.task.seed, "task_split": cfg.task.split,
        "num_problems": len(examples), "method": cfg.method.name,
        "method_params": {**defaults, **cfg.method.params},
        "sampling": {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
                     "max_new_tokens": s.max_new_tokens, "seed": s.seed, "dtype": cfg.model.dtype,
                     "decoding": "greedy" if s.temperature == 0 else "sampling"},
        "prices_per_million": {"input": m.price_input, "output": m.price_output},
        "metrics": metrics, "generate_calls": calls, "replayed_calls": hits,
        "cache_file": str(cache_path or ""), "seconds": time.monotonic() - started,
    }
    from r1lab.evals.report import write_method_report

    (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    with (run_dir / "completions.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, default=str) + "\n" for r in records)
    write_method_report(run_dir, results, records)
    return results
