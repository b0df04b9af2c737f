"""``r1lab eval``: generate (or reuse) n samples per held-out problem, score them, write a run folder.

Run folder: ``config.json``, ``results.json`` (metrics of the base prompt, each prompt variant's metrics and the
spread of pass@1 over variants, and every sampling setting), ``completions.jsonl`` (one line per sample),
``report.md`` with ``pass_at_k.png`` and ``lengths.png``.

Under torchrun / srun the generation is shared by the ranks (``r1lab.evals.generations``: whole chunks of prompts
per rank, seeded by their prompts, so the samples are those of one process); rank 0 scores, writes the cache and the
run folder, and the other ranks return an empty result once the generations are gathered.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from r1lab.config import to_dict
from r1lab.evals.answers import answer_of, equivalence
from r1lab.evals.config import EvalJobConfig
from r1lab.evals.generations import Generation, GenerationCache, generate_cached, model_fingerprint
from r1lab.evals.metrics import Sample, cluster_answers, reflection_counts, reflection_pattern, summarize
from r1lab.rewards.functions import format_reward
from r1lab.types import Example

COLLECTIVE_TIMEOUT_MINUTES = 60.0


@dataclass
class EvalResult:
    run_dir: Path
    results: dict[str, Any]
    generated_prompts: int  # prompts that were not in the cache


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def sampling_record(cfg: EvalJobConfig, ks: list[int]) -> dict[str, Any]:
    """Every setting that shapes the samples, stored with the results."""
    s = cfg.sampling
    return {"n": s.n, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
            "max_new_tokens": s.max_new_tokens, "seed": s.seed, "ks": ks, "dtype": cfg.model.dtype,
            "decoding": "greedy" if s.temperature == 0 else "sampling"}


def effective_ks(ks: list[int], n: int) -> list[int]:
    """The configured k values that n samples support, plus n itself (maj@n = cons@n)."""
    return sorted({k for k in ks if k <= n} | {n})


def score_generations(task, examples: list[Example], generations: list[Generation], extraction: list[str],
                      reflection: list[str], workers: int) -> tuple[list[list[Sample]], list[dict]]:
    """Scored samples per problem and one record per sample (for completions.jsonl)."""
    pattern = reflection_pattern(reflection)
    jobs = [(e, text) for e, g in zip(examples, generations) for text in g.texts]
    answers = [answer_of(text, task, extraction) for _, text in jobs]

    def score(i: int) -> float | BaseException:
        if answers[i] is None:
            return 0.0  # no answer is a wrong answer, not a verifier failure
        try:
            return float(task.score(answers[i], jobs[i][0]))
        except Exception as err:  # noqa: BLE001 - recorded, left out of the metrics (architecture principle 6)
            return err

    with ThreadPoolExecutor(max_workers=workers) as pool:
        scores = list(pool.map(score, range(len(jobs))))
    problems, records, row = [], [], 0
    for example, gen in zip(examples, generations):
        n = len(gen.texts)
        own = answers[row : row + n]
        clusters = cluster_answers(own, equivalence(task, example))
        samples = []
        for j in range(n):
            value, text = scores[row + j], gen.texts[j]
            error = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else None
            sample = Sample(text=text, length=gen.lengths[j], prompt_tokens=gen.prompt_tokens,
                            correct=error is None and value >= 1.0, valid=error is None, cluster=clusters[j],
                            formatted=format_reward(text, example, None) == 1.0, truncated=gen.truncated[j])
            samples.append(sample)
            records.append({"problem_id": example.id, "sample": j, "completion": text, "answer": own[j],
                            "gold": example.answer, "score": None if error else value, "correct": sample.correct,
                            "error": error, "cluster": clusters[j], "formatted": sample.formatted,
                            "length": sample.length, "truncated": sample.truncated,
                            "reflection": dict(reflection_counts(text, pattern))})
        problems.append(samples)
        row += n
    return problems, records


def spread(values: dict[str, float | None]) -> dict[str, float | None]:
    """min / max / range / population std of one metric over prompt variants."""
    xs = [v for v in values.values() if v is not None]
    if not xs:
        return {"min": None, "max": None, "range": None, "std": None}
    mean = sum(xs) / len(xs)
    return {"min": min(xs), "max": max(xs), "range": max(xs) - min(xs),
            "std": (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5}


def task_params(task_cfg) -> dict:
    """The task's params as loaded (see ``TaskConfig.resolved_params``)."""
    return task_cfg.resolved_params()


def run_eval(cfg: EvalJobConfig, engine_factory: Callable[[], Any] | None = None) -> EvalResult:
    """Evaluate ``cfg.model`` on ``cfg.task``'s problems (every problem of a benchmark, a generated task's held-out
    set: ``task.split``). ``engine_factory`` (tests) replaces the HF engine."""
    import torch

    from r1lab.evals.prompts import prompt_variants, render_prompts
    from r1lab.models.loading import cache_root, prepare_tokenizer, resolve_model_folder
    from r1lab.models.precision import generation_dtype
    from r1lab.rollout.base import SamplingParams
    from r1lab.tasks import load_task_config
    from r1lab.tasks.prompt_limits import fit_task, prompt_limit

    from r1lab.parallel import init_distributed

    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    run_dir = Path(cfg.log.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # a rank waits for the others' chunk at the end of each round: the timeout bounds one chunk's generation
    dist, rank_device = init_distributed(torch.device(resolve_device(cfg.model.device)), COLLECTIVE_TIMEOUT_MINUTES)
    device = str(rank_device)  # under torchrun with CUDA: this rank's GPU (LOCAL_RANK)
    # Resolved before anything is recorded: config.json, the results and the generation cache's key name the dtype
    # that generated, never "auto", and config.json the problems evaluated (task.split, task.eval_size).
    cfg.model.dtype = generation_dtype(device, cfg.model.dtype)
    cfg.task.split, cfg.task.eval_size = cfg.task.resolved_split(), cfg.task.resolved_eval_size()
    if dist.is_main:
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    started = time.monotonic()

    folder = resolve_model_folder(cfg.model.name)
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer)
    t = cfg.task
    task = load_task_config(t)
    # Before any generation: a problem with a prompt (in any variant) over the limit stops the run or is left out
    limit = prompt_limit(cfg.sampling.max_prompt_tokens, "sampling.max_prompt_tokens",
                         AutoConfig.from_pretrained(folder), cfg.sampling.max_new_tokens)
    shown_as = list(prompt_variants(cfg).values())
    task = fit_task(task, lambda e: [render_prompts([e], task.train, tokenizer, p, t.seed)[0] for p in shown_as],
                    tokenizer, limit, t.overlong_prompts, train=False)
    engine_cache: dict[str, Any] = {}

    def engine():  # loaded on first cache miss only
        if "engine" not in engine_cache:
            if engine_factory is not None:
                engine_cache["engine"] = engine_factory()
            else:
                from r1lab.models.loading import load_model
                from r1lab.rollout.native_engine import NativeEngine

                loaded = load_model(cfg.model.name, dtype=getattr(torch, cfg.model.dtype), device=device)
                engine_cache["engine"] = NativeEngine(loaded.model, loaded.tokenizer,
                                                      batch_size=cfg.sampling.batch_size)
        return engine_cache["engine"]

    s = cfg.sampling
    cache_dir = None
    if cfg.log.cache:
        cache_dir = Path(cfg.log.cache_dir) if cfg.log.cache_dir else cache_root() / "generations"
    engine_setting = {"model": model_fingerprint(folder), "dtype": cfg.model.dtype, "device": device.split(":")[0],
                      "engine": "hf_generate" if engine_factory is None else "custom", "seed": s.seed}
    if cfg.method.name != "sample":
        from r1lab.evals.generations import setting_key
        from r1lab.evals.methods import run_method

        cache_path = cache_dir / "methods" / f"{setting_key(engine_setting)}.jsonl" if cache_dir else None
        results = run_method(cfg, task, tokenizer, engine, run_dir, cache_path, dist)
        if results is None:  # not rank 0
            return EvalResult(run_dir, {}, 0)
        return EvalResult(run_dir, results, results.get("generate_calls", 0))

    sampling = SamplingParams(s.temperature, s.top_p, s.top_k, s.max_new_tokens)
    ks = effective_ks(cfg.metrics.ks, s.n)
    setting = {**engine_setting, **asdict(sampling), "n": s.n}
    cache = GenerationCache(cache_dir, setting)

    variants, all_records, generated = {}, [], 0
    for name, prompt in prompt_variants(cfg).items():
        prompts = render_prompts(task.eval, task.train, tokenizer, prompt, t.seed)
        generated += len({p for p in prompts if cache.get(p) is None})
        gens = generate_cached(prompts, s.n, sampling, cache, engine, s.batch_size, s.seed, cfg.log.progress, dist)
        if not dist.is_main:  # rank 0 scores and writes
            continue
        problems, records = score_generations(task, task.eval, gens, cfg.metrics.extraction,
                                              cfg.metrics.reflection_words, cfg.metrics.score_workers)
        m = cfg.metrics
        variants[name] = summarize(problems, ks, m.price_input, m.price_output, m.reflection_words, m.vote_subsets,
                                   s.seed)
        for i, record in enumerate(records):
            record["variant"] = name
            if record["sample"] == 0:
                record["prompt"] = prompts[i // s.n]
        all_records += records

    if not dist.is_main:
        return EvalResult(run_dir, {}, generated)
    results: dict[str, Any] = {
        "model": cfg.model.name, "model_folder": str(folder), "task": t.name, "task_params": task_params(t),
        "task_seed": t.seed, "task_split": t.split, "num_problems": len(task.eval),
        "sampling": sampling_record(cfg, ks),
        "prices_per_million": {"input": cfg.metrics.price_input, "output": cfg.metrics.price_output},
        "metrics": variants["default"], "generated_prompts": generated, "cache_file": str(cache.path or ""),
        "seconds": time.monotonic() - started,
    }
    if len(variants) > 1:
        results["variants"] = variants
        results["prompt_sensitivity"] = {key: spread({v: variants[v][key] for v in variants})
                                         for key in ("pass@1", f"maj@{s.n}")}
    write_outputs(run_dir, results, all_records)
    return EvalResult(run_dir, results, generated)


def write_outputs(run_dir: Path, results: dict, records: list[dict]) -> None:
    from r1lab.evals.report import write_report

    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    with (run_dir / "completions.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    write_report(run_dir, results, records)
