"""GRPO step speed: r1lab against TRL's GRPOTrainer on identical work, side by side.

Both sides train the embedded SmolLM2-135M-Instruct (r1lab.models.loading, alias smollm2-135m; TRL gets the same
cached HF folder) on the demo task rg:basic_arithmetic, with the same rendered chat prompts in the same order,
8 prompts x 8 completions per optimizer step, at most 128 new tokens, temperature 1.0, top_p 1.0, beta 0 (no
reference model), lr 1e-5 (constant), AdamW betas (0.9, 0.99), grad-norm clip 1.0, one optimizer pass per batch,
micro-batches of 16 sequences, token-level loss (r1lab token_mean = TRL loss_type="dapo"), and r1lab's accuracy
reward (TRL's reward function calls r1lab's scorer). ``--ignore-eos`` makes both generate exactly 128 tokens
(min_new_tokens = max) so the generated work is equal token for token; otherwise lengths follow the model.

Each side runs in its own subprocess (so peak RSS is its own) and reports seconds per step (median over
``--steps`` steps after ``--warmup``), generated tokens/s, trained tokens/s and peak RSS. FLOPs: 2*N per
generated token (forward) + 6*N per trained token (forward and backward), N = parameter count (Kaplan et al.
2020); trained tokens = completion tokens in the loss of the sequences that ran forward/backward (r1lab skips
zero-advantage sequences, whose gradient is exactly zero with beta = 0; TRL runs every sequence).

    .venv/bin/python benchmarks/grpo_vs_trl.py --steps 3 --warmup 1 [--ignore-eos] [--only trl|r1lab]
        [--trl-bf16 on|off] [--combine]

Results go to benchmarks/results/grpo_vs_trl[_ignore_eos]_<side><tag>.json, the tag naming what the run holds
fixed (precision, machine: e.g. ``--tag _fp32_nonamx``); ``--combine`` prints the comparison from those files without
running anything (to run the sides separately on a shared machine).
The last line printed is ``speedup vs TRL: X.XXx (r1lab S1 s/step, TRL S2 s/step)``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

RESULTS = Path(__file__).resolve().parent / "results"
# --set keys that TRL's side mirrors (the rest change r1lab only, e.g. its rollout dtype)
TRL_MIRRORS = ("task.", "prompt.", "rollout.max_new_tokens", "rollout.group_size", "rollout.temperature",
               "rollout.top_p", "train.lr", "train.prompts_per_step", "algo.beta")
PROMPTS_PER_STEP, GROUP, MAX_NEW, MICRO = 8, 8, 128, 16
LR, TEMPERATURE, TOP_P, SEED = 1e-5, 1.0, 1.0, 0


def _grpo_config(output_dir: str, steps: int, ignore_eos: bool, overrides: list[str]):
    from r1lab.config import GRPOConfig, load_config

    sets = [f"train.steps={steps}", f"train.prompts_per_step={PROMPTS_PER_STEP}", f"rollout.group_size={GROUP}",
            f"rollout.max_new_tokens={MAX_NEW}", f"rollout.temperature={TEMPERATURE}", f"rollout.top_p={TOP_P}",
            f"train.lr={LR}", f"train.micro_batch_size={MICRO}", f"train.seed={SEED}", "algo.beta=0",
            "algo.num_iterations=1", "eval.every=0", "train.time_limit_minutes=0", "log.progress=false",
            "log.tensorboard=false", f"log.output_dir={output_dir}", "log.checkpoint_every=0"]
    cfg = load_config(GRPOConfig, None, sets + overrides)
    cfg.rollout.min_new_tokens = cfg.rollout.max_new_tokens if ignore_eos else 0
    return cfg


def _param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # tied embedding counted once


def run_r1lab(steps: int, warmup: int, ignore_eos: bool, overrides: list[str]) -> dict:
    from r1lab.train.grpo import train_grpo

    with tempfile.TemporaryDirectory(prefix="r1lab-bench-") as out:  # the run folder (checkpoints: GBs) goes after
        cfg = _grpo_config(str(Path(out) / "run"), warmup + steps, ignore_eos, overrides)
        train_grpo(cfg)
        records = [json.loads(line) for line in (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()]
    per_step = [{"seconds": r["time/step_s"], "generate_seconds": r["time/generate_s"],
                 "optimize_seconds": r.get("time/optimize_s"),
                 "generated_tokens": r["tokens/generated"], "trained_tokens": r["tokens/trained"],
                 "reward": r["reward/mean"]} for r in records if "time/step_s" in r]
    return {"side": "r1lab", "config": {"overrides": overrides}, "steps": per_step}


def run_trl(steps: int, warmup: int, ignore_eos: bool, bf16: bool, extra: dict, partial: Path,
            overrides: list[str]) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from transformers import AutoTokenizer

    from r1lab.models.loading import prepare_tokenizer, resolve_model_folder
    from r1lab.models.templates import build_prompt
    from r1lab.rewards import RewardContext, score_batch

    cfg = _grpo_config("/nonexistent", warmup + steps, ignore_eos, overrides)
    unmirrored = [o for o in overrides if not o.startswith(TRL_MIRRORS)]
    if unmirrored:
        print(f"TRL side: {unmirrored} change r1lab only", flush=True)
    max_new, per_step = cfg.rollout.max_new_tokens, cfg.train.prompts_per_step * cfg.rollout.group_size
    folder = resolve_model_folder(cfg.model.name)  # the dequantised HF folder; TRL loads the model from it
    tokenizer, task = AutoTokenizer.from_pretrained(folder), _task(cfg)
    prepare_tokenizer(tokenizer)
    ctx = RewardContext(task=task, extraction=tuple(cfg.rewards.extraction), params=cfg.rewards.params,
                        tokenizer=tokenizer, max_new_tokens=max_new)
    examples = _examples(cfg, task)
    prompts = [build_prompt(e, tokenizer, cfg.prompt.template, cfg.prompt.system, cfg.prompt.instruction) for e in examples]
    for p in prompts[:4]:  # TRL tokenises with special tokens on: check that this adds nothing (no BOS here)
        assert tokenizer(p)["input_ids"] == tokenizer(p, add_special_tokens=False)["input_ids"]
    by_id = {e.id: e for e in examples}
    dataset = Dataset.from_dict({"prompt": prompts, "example_id": [e.id for e in examples]})

    def accuracy(prompts, completions, example_id, **_):  # r1lab's accuracy reward, as r1lab scores it
        return [r.total for r in score_batch(completions, [by_id[i] for i in example_id], {"accuracy": 1.0}, ctx)]

    log: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            log.append({"seconds": time.monotonic() - self.t0})

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs and log:
                log[-1]["generated_tokens"] = logs["completions/mean_length"] * per_step
                log[-1]["reward"] = logs.get("reward")
                log[-1]["trained_tokens"] = log[-1]["generated_tokens"]  # TRL trains every token of every sequence
                print(f"TRL step {len(log)}: {log[-1]}", flush=True)
                partial.write_text(json.dumps({"side": "trl", "partial": True, "steps": log}))  # a cut run leaves data

    scratch = tempfile.TemporaryDirectory(prefix="trl-bench-")  # removed when this child process exits
    args = TRLConfig(
        output_dir=scratch.name, use_cpu=True, bf16=bf16, seed=SEED,
        per_device_train_batch_size=MICRO, gradient_accumulation_steps=per_step // MICRO,
        num_generations=cfg.rollout.group_size, max_completion_length=max_new, temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p, beta=cfg.algo.beta, learning_rate=cfg.train.lr, lr_scheduler_type="constant",
        adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0,
        max_grad_norm=1.0, num_iterations=1, loss_type="dapo", scale_rewards="group", epsilon=0.2,
        max_steps=warmup + steps, shuffle_dataset=False, logging_steps=1, report_to="none", save_strategy="no",
        gradient_checkpointing=extra.get("gradient_checkpointing", False), dataloader_num_workers=0,
        generation_kwargs={"min_new_tokens": max_new} if ignore_eos else None,
        use_transformers_continuous_batching=extra.get("continuous_batching", False),
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=str(folder), reward_funcs=accuracy, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Timer()])
    trainer.train()
    return {"side": "trl", "config": {"bf16": bf16, **extra}, "steps": log}


def _task(cfg):
    from r1lab.tasks import load_task

    return load_task(cfg.task.name, cfg.task.resolved_params(), cfg.task.seed, cfg.task.train_size, cfg.task.eval_size,
                     cfg.task.eval_path)


def _examples(cfg, task) -> list:
    """The prompts r1lab's loop draws, in its order, so TRL (unshuffled) sees the same ones."""
    from r1lab.tasks.sampler import PromptSampler

    sampler = PromptSampler(len(task.train), seed=cfg.train.seed)
    return [task.train[i] for i in sampler.next_indices(cfg.train.steps * cfg.train.prompts_per_step)]


def summarise(raw: dict, warmup: int, n_params: int) -> dict:
    timed = raw["steps"][warmup:]
    sec = statistics.median(r["seconds"] for r in timed)
    total_s = sum(r["seconds"] for r in timed)
    gen = sum(r["generated_tokens"] for r in timed)
    trained = sum(r["trained_tokens"] for r in timed)
    flops = 2 * n_params * gen + 6 * n_params * trained
    return {**raw, "seconds_per_step": sec, "generated_tokens_per_s": gen / total_s,
            "trained_tokens_per_s": trained / total_s, "model_gflop_per_s": flops / total_s / 1e9,
            "mean_generated_tokens_per_step": gen / len(timed)}


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    if args.child == "r1lab":
        raw = run_r1lab(args.steps, args.warmup, args.ignore_eos, args.set)
    else:
        extra = {"gradient_checkpointing": args.trl_gradient_checkpointing,
                 "continuous_batching": args.trl_continuous_batching}
        raw = run_trl(args.steps, args.warmup, args.ignore_eos, args.trl_bf16 == "on", extra, Path(args.json), args.set)
    raw["wall_seconds"], raw["warmup"] = time.monotonic() - t0, args.warmup
    raw["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raw["threads"] = torch.get_num_threads()
    raw["machine"] = describe_machine()
    Path(args.json).write_text(json.dumps(raw, indent=2))


def result_path(side: str, ignore_eos: bool) -> Path:
    return RESULTS / f"grpo_vs_trl{'_ignore_eos' if ignore_eos else ''}_{side}.json"


def n_params() -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    from r1lab.models.loading import resolve_model_folder

    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_folder("smollm2-135m")))
    return _param_count(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--only", choices=("trl", "r1lab"), help="run one side; the other is read from its JSON")
    parser.add_argument("--combine", action="store_true", help="run nothing; compare the saved JSON results")
    parser.add_argument("--ignore-eos", action="store_true", help="both sides generate exactly max_new_tokens (128)")
    parser.add_argument("--trl-bf16", choices=("on", "off"), default="off", help="TRL's bf16 mixed precision")
    parser.add_argument("--trl-gradient-checkpointing", action="store_true", help="TRL's default; off is faster")
    parser.add_argument("--trl-continuous-batching", action="store_true",
                        help="TRL's use_transformers_continuous_batching generation")
    parser.add_argument("--set", action="append", default=[],
                        help="config override (KEY=VALUE); TRL follows task.*, prompt.*, rollout.max_new_tokens / "
                             "group_size / temperature / top_p, train.lr / prompts_per_step, algo.beta")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each side (0 = torch default)")
    parser.add_argument("--tag", default="", help="suffix of the JSON file names: the variant, e.g. _fp32_nonamx")
    parser.add_argument("--child", choices=("trl", "r1lab"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    RESULTS.mkdir(parents=True, exist_ok=True)
    sides = [args.only] if args.only else ([] if args.combine else ["r1lab", "trl"])
    for side in sides:
        path = result_path(side + args.tag, args.ignore_eos)
        cmd = [sys.executable, __file__, "--child", side, "--json", str(path), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--trl-bf16", args.trl_bf16, "--threads", str(args.threads)]
        cmd += ["--ignore-eos"] * args.ignore_eos + ["--trl-gradient-checkpointing"] * args.trl_gradient_checkpointing
        cmd += ["--trl-continuous-batching"] * args.trl_continuous_batching
        for s in args.set:
            cmd += ["--set", s]
        print(f"running {side}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True)

    N = n_params()
    summary, machines = {}, {}
    for side in ("r1lab", "trl"):
        path = result_path(side + args.tag, args.ignore_eos)
        if not path.is_file():
            sys.exit(f"{path} missing: run the {side} side first (--only {side})")
        raw = json.loads(path.read_text())
        summary[side] = summarise(raw, args.warmup if raw.get("warmup") is None else raw["warmup"], N)
        machines[side] = raw.get("machine", "not recorded in this results file")
    if machines["r1lab"] != machines["trl"]:  # a side read back from an earlier run may come from another machine
        print("\n" + "\n".join(f"{side} ran on: {machine}" for side, machine in machines.items()))
    print(f"\n{describe_machine()}; transformers {metadata.version('transformers')}, trl "
          f"{metadata.version('trl')}; N = {N / 1e6:.1f}M parameters; "
          f"{'EOS ignored (128 tokens each)' if args.ignore_eos else 'EOS allowed'}")
    print(f"{'':8s} {'s/step':>8s} {'gen tok/s':>10s} {'train tok/s':>12s} {'GFLOP/s':>8s} {'peak RSS MB':>12s} "
          f"{'gen tok/step':>13s}  config")
    for side, s in summary.items():
        print(f"{side:8s} {s['seconds_per_step']:8.2f} {s['generated_tokens_per_s']:10.1f} "
              f"{s['trained_tokens_per_s']:12.1f} {s['model_gflop_per_s']:8.2f} {s['peak_rss_mb']:12.0f} "
              f"{s['mean_generated_tokens_per_step']:13.0f}  {s['config']}")
    r, t = summary["r1lab"], summary["trl"]
    print(f"ratios r1lab/TRL: generated tok/s {r['generated_tokens_per_s'] / t['generated_tokens_per_s']:.2f}x, "
          f"trained tok/s {r['trained_tokens_per_s'] / t['trained_tokens_per_s']:.2f}x, "
          f"peak RSS {r['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")
    print(f"speedup vs TRL: {t['seconds_per_step'] / r['seconds_per_step']:.2f}x "
          f"(r1lab {r['seconds_per_step']:.2f} s/step, TRL {t['seconds_per_step']:.2f} s/step)")


if __name__ == "__main__":
    main()
