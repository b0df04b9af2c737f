"""``r1lab prm``: train a process reward model the Math-Shepherd way, end to end.

1. sample ``solutions`` responses per training problem from the policy model;
2. label every step by Monte-Carlo rollouts from the prefix ending at it (``monte_carlo_labels``);
3. fit a one-logit token-classification head on the policy's backbone (``train_prm``);
4. measure, on held-out problems labelled the same way, how often the PRM's step score sides with the label.

The run folder holds config.json, labels.jsonl (training labels), heldout_labels.jsonl, metrics.jsonl (+ TensorBoard),
prm_training.png, summary.json and final/ (the PRM, loadable with ``method.params.prm={kind: trained, model: FOLDER}``
by ``r1lab eval --method beam_search|dvts|best_of_n``).

Under torchrun / srun the ranks label their chunks of problems and train on their share of each batch; the labels
and weights are those of one process (docs/parallel.md), and rank 0 writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1lab.config import AUTO_DTYPE_HELP, GENERATION_DTYPES, PromptConfig, TaskConfig, option, require, to_dict

if TYPE_CHECKING:
    from r1lab.infer.base import InferContext
    from r1lab.parallel import DistContext
    from r1lab.types import Example


@dataclass
class PRMModelConfig:
    name: str = option("smollm2-135m", "the policy whose solutions are labelled; also the PRM's starting backbone")
    dtype: str = option("auto", f"dtype the policy generates in (the PRM itself trains in float32); {AUTO_DTYPE_HELP}",
                        GENERATION_DTYPES)
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda when available)")
    threads: int = option(0, "torch CPU threads (0 = torch default)")


@dataclass
class MonteCarloConfig:
    train_problems: int = option(64, "training problems whose solutions are labelled")
    heldout_problems: int = option(32, "held-out problems (task.eval) labelled the same way to measure the PRM")
    solutions: int = option(4, "solutions sampled per problem")
    rollouts: int = option(4, "continuations rolled out from each step prefix (Math-Shepherd's N)")
    mode: str = option("soft", "step label: soft = share of rollouts reaching the answer, hard = any does",
                       ("soft", "hard"))
    delimiter: str = option("\n", "what separates steps in a response")
    max_steps: int = option(8, "steps kept per solution (the rest is cut)")
    temperature: float = option(0.8, "sampling temperature of solutions and rollouts")
    top_p: float = option(0.95, "nucleus sampling threshold")
    max_new_tokens: int = option(64, "longest solution or rollout")

    def check(self) -> None:
        require(self.train_problems >= 1, "train_problems", "must be >= 1")
        require(self.heldout_problems >= 0, "heldout_problems", "must be >= 0")
        require(self.solutions >= 1 and self.rollouts >= 1, "rollouts", "solutions and rollouts must be >= 1")
        require(self.temperature > 0, "temperature", "must be > 0: Monte-Carlo labels need varied rollouts")
        require(bool(self.delimiter), "delimiter", "must not be empty")


@dataclass
class PRMTrainConfig:
    epochs: int = option(3, "passes over the labelled solutions")
    lr: float = option(5e-5, "AdamW learning rate (constant)")
    batch_size: int = option(8, "solutions per optimizer step")
    seed: int = option(0, "seed of sampling and data order")

    def check(self) -> None:
        require(self.epochs >= 1, "epochs", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class PRMLogConfig:
    output_dir: str = option("runs/prm", "run folder: labels, metrics, plot, summary.json and final/ (the PRM)")
    tensorboard: bool = option(True, "write TensorBoard event files")


@dataclass
class PRMJobConfig:
    """``r1lab prm``: Monte-Carlo step labels from the policy, then a trained process reward model."""

    model: PRMModelConfig = field(default_factory=PRMModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    mc: MonteCarloConfig = field(default_factory=MonteCarloConfig)
    train: PRMTrainConfig = field(default_factory=PRMTrainConfig)
    log: PRMLogConfig = field(default_factory=PRMLogConfig)


def step_agreement(prm, records: list[dict[str, Any]]) -> dict[str, float]:
    """How the PRM's step scores relate to Monte-Carlo labels: accuracy of ``score > 0.5`` against ``label > 0.5``,
    and the mean absolute error, over every labelled step."""
    if not records:
        return {}
    scores = prm.score_steps([r["question"] for r in records], [r["steps"] for r in records])
    pairs = [(s, y) for r, row in zip(records, scores) for s, y in zip(row, r["labels"])]
    return {"heldout/step_accuracy": sum((s > 0.5) == (y > 0.5) for s, y in pairs) / len(pairs),
            "heldout/step_mae": sum(abs(s - y) for s, y in pairs) / len(pairs),
            "heldout/steps": float(len(pairs)),
            "heldout/label_mean": sum(y for _, y in pairs) / len(pairs)}


# Problems labelled together (one solutions call, one rollouts call). Fixed, so that 1 and W ranks make the same
# engine calls; 16 x mc.solutions=4 fills one decode batch of the engine's 64 sequences.
LABEL_CHUNK_PROBLEMS = 16
# A rank waits at the end of each labelling round for the others' chunk, and at the end of the job for rank 0's
# held-out scoring: the timeout bounds those.
COLLECTIVE_TIMEOUT_MINUTES = 60.0


def label_in_rounds(examples: list["Example"], ctx: "InferContext", dist: "DistContext",
                    **mc: Any) -> list[dict[str, Any]]:
    """``monte_carlo_labels`` over chunks of LABEL_CHUNK_PROBLEMS problems, chunk r * W + k on rank k in round r
    (as ``r1lab eval`` deals its chunks); every rank returns every record, in problem order. Sampling is seeded per
    problem, so the records are one process's."""
    from r1lab.infer.prm import monte_carlo_labels
    from r1lab.parallel import all_gather_objects

    chunks = [examples[i : i + LABEL_CHUNK_PROBLEMS] for i in range(0, len(examples), LABEL_CHUNK_PROBLEMS)]
    records: list[dict[str, Any]] = []
    for first in range(0, len(chunks), dist.world_size):
        mine = first + dist.rank
        made = monte_carlo_labels(chunks[mine], ctx, **mc) if mine < len(chunks) else []
        for part in all_gather_objects(dist, made):  # rank order = chunk order
            records += part
    return records


def run_prm_job(cfg: PRMJobConfig, generator=None, tokenizer=None) -> dict[str, Any]:
    """Label, train, measure; returns the summary (also written to summary.json). ``generator``/``tokenizer``
    replace the policy (tests). Under torchrun / srun the ranks share the labelling (``label_in_rounds``) and
    each optimizer step's batch (``train_prm``); rank 0 writes the run folder. The other ranks return {}."""
    import torch

    from r1lab.infer.base import InferContext
    from r1lab.infer.prm import TrainedPRM, train_prm
    from r1lab.models.loading import resolve_model_folder
    from r1lab.models.templates import build_prompt
    from r1lab.parallel import init_distributed
    from r1lab.rollout.base import SamplingParams
    from r1lab.tasks import load_task_config
    from r1lab.track.metrics import MetricsLogger
    from r1lab.train.run_setup import resolve_device

    run_dir = Path(cfg.log.output_dir)
    if (run_dir / "final").exists():
        raise FileExistsError(f"{run_dir} already holds a trained PRM (final/); choose another log.output_dir")
    dist, device = init_distributed(resolve_device(cfg.model.device), COLLECTIVE_TIMEOUT_MINUTES)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    torch.manual_seed(cfg.train.seed)
    t0 = time.monotonic()

    task = load_task_config(dataclasses.replace(cfg.task, train_size=max(cfg.task.train_size, cfg.mc.train_problems)))
    if generator is None:
        from r1lab.infer.generation import EngineGenerator
        from r1lab.models.loading import load_model
        from r1lab.models.precision import generation_dtype
        from r1lab.rollout.native_engine import NativeEngine

        loaded = load_model(cfg.model.name, dtype=getattr(torch, generation_dtype(device, cfg.model.dtype)),
                            device=device)
        tokenizer = loaded.tokenizer
        generator = EngineGenerator(NativeEngine(loaded.model, tokenizer), tokenizer)

    def render(example, instruction):
        return build_prompt(example, tokenizer, cfg.prompt.template, cfg.prompt.system,
                            cfg.prompt.instruction if instruction is None else instruction)

    sampling = SamplingParams(cfg.mc.temperature, cfg.mc.top_p, 0, cfg.mc.max_new_tokens)
    ctx = InferContext(generator=generator, render=render, task=task, sampling=sampling, tokenizer=tokenizer,
                       model_name=cfg.model.name, seed=cfg.train.seed)
    mc = dict(solutions=cfg.mc.solutions, rollouts=cfg.mc.rollouts, delimiter=cfg.mc.delimiter,
              max_steps=cfg.mc.max_steps, mode=cfg.mc.mode)
    if dist.is_main:
        print(f"labelling {cfg.mc.train_problems} training problems x {cfg.mc.solutions} solutions "
              f"({cfg.mc.rollouts} rollouts per step) on {dist.world_size} rank(s) ...", flush=True)
    records = label_in_rounds(task.train[: cfg.mc.train_problems], ctx, dist, **mc)
    heldout = label_in_rounds(task.eval[: cfg.mc.heldout_problems], ctx, dist, **mc)
    if dist.is_main:
        for name, rows in (("labels.jsonl", records), ("heldout_labels.jsonl", heldout)):
            with open(run_dir / name, "w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
    t_label = time.monotonic() - t0
    if not records:
        raise ValueError("no solution had a step to label: raise mc.max_new_tokens or check the prompt")

    logger = MetricsLogger(run_dir, tensorboard=cfg.log.tensorboard) if dist.is_main else None
    history: list[dict[str, Any]] = []

    def on_step(step: int, metrics: dict[str, float]) -> None:
        logger.log(step, metrics)
        history.append({"step": step, **metrics})

    folder = train_prm(records, resolve_model_folder(cfg.model.name), run_dir / "final", epochs=cfg.train.epochs,
                       lr=cfg.train.lr, batch_size=cfg.train.batch_size, separator=cfg.mc.delimiter,
                       seed=cfg.train.seed, on_step=on_step if dist.is_main else None, device=str(device), dist=dist)
    if not dist.is_main:
        return {}
    summary: dict[str, Any] = {
        "train_solutions": len(records), "train_steps_labelled": sum(len(r["labels"]) for r in records),
        "train_label_mean": sum(sum(r["labels"]) for r in records) / max(1, sum(len(r["labels"]) for r in records)),
        "train_solution_accuracy": sum(r["correct"] for r in records) / len(records),
        "heldout_solutions": len(heldout), "seconds_labelling": t_label, "prm": str(folder),
        "world_size": dist.world_size,
    }
    summary.update(step_agreement(TrainedPRM.load(folder, str(device)), heldout))
    if history:
        summary["final_train_loss"] = history[-1]["train/loss"]
        logger.log(history[-1]["step"], {k: v for k, v in summary.items() if k.startswith("heldout/")})
    logger.close()
    summary["seconds_total"] = time.monotonic() - t0
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    from r1lab.track.plots import plot_training

    plot_training(history, run_dir / "prm_training.png", title=f"PRM from {cfg.model.name}",
                  panels=(("BCE loss", ("train/loss",)), ("Step-label accuracy", ("train/step_accuracy",))))
    return summary
