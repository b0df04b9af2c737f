"""Peak memory of GRPO and SFT on SmolLM2-135M: full fine-tuning vs LoRA rank 8 / 16 / 64, measured (peak RSS of
each run in its own process) next to the planner's estimate (r1lab.train.memory_plan), plus the planner alone for
a Qwen2-1.5B-style and a Llama-3-8B-style config (meta device, no weights) on 24, 80 and 141 GB devices.

    flock /tmp/r1lab-heavy.lock .venv/bin/python benchmarks/memory.py [--steps 2]

Writes benchmarks/results/memory.json and memory.md. Each measured run is a fresh subprocess
(``--one JOB RANK``), so every peak is its own; the estimate is computed in that process before the model loads.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RANKS = (0, 8, 16, 64)
GB = 1024**3

# GRPO: the zero recipe's task and 16 new tokens, sized to a shared 2-core machine: 2 prompts x 4 samples a step in
# micro-batches of 4, a KL reference
GRPO = ["algo.beta=0.04", "train.prompts_per_step=2", "rollout.group_size=4", "train.micro_batch_size=4",
        "eval.every=0", "log.progress=false", "log.tensorboard=false", "log.checkpoint_every=0"]
# SFT: packed rows of 128 tokens, 8 examples a step in micro-batches of 2 rows, no generation evals
SFT = ["data.max_length=128", "train.batch_size=8", "train.micro_batch_size=2", "eval.every=0", "data.eval_size=4",
       "log.progress=false", "log.tensorboard=false", "log.checkpoint_every=0", "eval.accuracy=false"]


def sft_traces(path: Path) -> None:
    """Arithmetic traces with a short worked answer (long enough that a packed row holds a few)."""
    rows = []
    for a in range(40):
        for b in range(5):
            steps = " ".join(f"{a} + {k} = {a + k}." for k in range(b + 1))
            rows.append({"prompt": f"What is {a} + {b}?", "completion": f"<think>{steps}</think><answer>{a + b}</answer>"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def longest_prompt(cfg) -> int:
    """Tokens of the longest training prompt of the GRPO task, template included (the trainer's prompt width)."""
    from r1lab.models.loading import resolve_model_folder
    from r1lab.models.templates import build_prompt
    from r1lab.tasks import load_task_config
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_folder(cfg.model.name))
    task = load_task_config(cfg.task)
    p = cfg.prompt
    return max(len(tok(build_prompt(ex, tok, p.template, p.system, p.instruction), add_special_tokens=False).input_ids)
               for ex in task.train)


def run_one(job: str, rank: int, steps: int, out: Path) -> dict:
    """One run in this process: the plan first, then training; returns both with the peak RSS."""
    import torch

    from r1lab.config import GRPOConfig, SFTConfig, load_config
    from r1lab.train.memory_plan import plan_job

    from r1lab.train.grpo import train_grpo
    from r1lab.train.sft import train_sft

    torch.set_num_threads(2)
    lora = [f"lora.rank={rank}"] if rank else []
    # planned as a run plans itself: after the trainer's imports (the process part is this process's RSS now)
    if job == "grpo":
        cfg = load_config(GRPOConfig, None, GRPO + lora + [f"train.steps={steps}", f"log.output_dir={out}"])
        shape, plan = plan_job(cfg, "grpo", torch.device("cpu"), prompt_tokens=longest_prompt(cfg))
        train = train_grpo
    else:
        data = out.parent / "traces.jsonl"
        sft_traces(data)
        cfg = load_config(SFTConfig, None, SFT + lora + [f"train.steps={steps}", f"log.output_dir={out}",
                                                         f"data.train_path={data}"])
        shape, plan = plan_job(cfg, "sft", torch.device("cpu"))
        train = train_sft
    start = time.monotonic()
    train(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"job": job, "lora_rank": rank, "steps": steps, "seconds": time.monotonic() - start, "peak_rss": peak,
            "planned_peak": plan.peak, "parts": plan.parts, "params": shape.params,
            "prompt_tokens": plan.settings.prompt_tokens}


def planned_large() -> list[dict]:
    """The planner on 1.5B and 8B configs written here (no weights): GRPO and SFT, full and LoRA 16, with and
    without activation checkpointing, bf16 autocast on a GPU (the usual setting); full fine-tuning with fp32 master
    weights, and with bf16 ones (fp32 AdamW moments; stochastic rounding or Kahan, r1lab.train.low_precision_adamw,
    where the bf16 policy is also the rollout copy)."""
    import dataclasses

    from transformers import LlamaConfig, Qwen2Config

    from r1lab.train.memory_plan import Settings, model_shape, plan

    configs = {
        # Qwen2-1.5B's published shape
        "1.5B (Qwen2-1.5B-style)": Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                                               num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                                               tie_word_embeddings=True),
        # Llama-3-8B's published shape
        "8B (Llama-3-8B-style)": LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                             num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                             tie_word_embeddings=False),
    }
    rows = []
    for name, config in configs.items():
        shape = model_shape(config)
        # GRPO: 8 prompts x 8 samples of 256 prompt + 1024 new tokens, micro-batches of 4; SFT: 4 rows of 2048
        grpo = Settings(train_dtype="float32", rollout_dtype="bfloat16", autocast="bfloat16", reference=True,
                        rollout_copy=True, kv_sequences=64, kv_tokens=1280, micro_sequences=4, prompt_tokens=256,
                        completion_tokens=1024, group_size=8, logit_rows=1024, runtime_bytes=GB // 2)
        sft = Settings(train_dtype="float32", rollout_dtype="bfloat16", autocast="bfloat16", micro_sequences=4,
                       completion_tokens=2048, logit_rows=512, runtime_bytes=GB // 2)
        for job, st in (("grpo", grpo), ("sft", sft)):
            # full fine-tuning (fp32, then bf16 master weights); LoRA over an fp32 base; over a frozen bf16 base
            for rank, base, update in ((0, "float32", "none"), (0, "bfloat16", "stochastic_rounding"),
                                       (0, "bfloat16", "kahan"), (16, "float32", "none"),
                                       (16, "bfloat16", "stochastic_rounding")):
                for ckpt in (False, True):
                    copy = st.rollout_copy and (rank > 0 or base != st.rollout_dtype)
                    p = plan(shape, dataclasses.replace(st, lora_rank=rank, gradient_checkpointing=ckpt,
                                                        train_dtype=base, low_precision_update=update,
                                                        rollout_copy=copy))
                    rows.append({"model": name, "params": shape.params, "job": job, "lora_rank": rank,
                                 "base_dtype": base, "low_precision_update": update, "gradient_checkpointing": ckpt,
                                 "planned_peak": p.peak, "fits": {gb: p.peak <= gb * GB for gb in (24, 80, 141)}})
    return rows


def markdown(result: dict) -> str:
    lines = [f"{result['date']}, {result['machine']}", f"Command: `{result['command']}`", ""]
    if result["measured"]:
        lines += ["| job | fine-tuning | peak RSS (measured) | planner's peak | planner - measured | run time |",
                  "|---|---|---:|---:|---:|---:|"]
    for r in result["measured"]:
        how = f"LoRA rank {r['lora_rank']}" if r["lora_rank"] else "full"
        err = (r["planned_peak"] - r["peak_rss"]) / r["peak_rss"]
        lines.append(f"| {r['job']} | {how} | {r['peak_rss'] / GB:.2f} GB | {r['planned_peak'] / GB:.2f} GB | "
                     f"{err:+.0%} | {r['seconds']:.0f} s |")
    lines += [""] if result["measured"] else []
    lines += ["Planner only (full fine-tuning: fp32 master weights and AdamW states, or bf16 master weights with "
              "fp32 AdamW states and stochastic rounding or a bf16 Kahan compensation; LoRA: fp32 adapters and "
              "their AdamW states over an fp32 or a frozen bf16 base; bf16 autocast and rollouts; 0.5 GB CUDA "
              "context; GRPO: 8 x 8 samples of 256 + 1024 tokens, micro-batches of 4 sequences, KL reference; "
              "SFT: micro-batches of 4 x 2048 tokens):", "",
              "| model | job | fine-tuning | activation checkpointing | planned peak | fits 24 GB | fits 80 GB | "
              "fits 141 GB |", "|---|---|---|---|---:|---|---|---|"]
    for r in result["planned"]:
        how = f"LoRA rank {r['lora_rank']}, {r['base_dtype']} base" if r["lora_rank"] else \
            "full (fp32)" if r["base_dtype"] == "float32" else f"full (bf16, {r.get('low_precision_update')})"
        yes = lambda ok: "yes" if ok else "no"  # noqa: E731
        fits = lambda gb: r["fits"].get(gb, r["fits"].get(str(gb)))  # noqa: E731  (str keys once read from JSON)
        lines.append(f"| {r['model']} | {r['job']} | {how} | {yes(r['gradient_checkpointing'])} | "
                     f"{r['planned_peak'] / GB:.1f} GB | {yes(fits(24))} | {yes(fits(80))} | {yes(fits(141))} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--jobs", default="grpo,sft")
    parser.add_argument("--replan", action="store_true", help="recompute only the planner-only table of an existing "
                                                                   "results/memory.json (no measurement)")
    parser.add_argument("--planned-only", action="store_true", help="only the planner's 1.5B / 8B table (no "
                                                                         "training; written to memory_planned.*)")
    parser.add_argument("--one", nargs=2, metavar=("JOB", "RANK"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one[0], int(args.one[1]), args.steps, Path(args.out))))
        return
    if args.replan:
        result = json.loads((RESULTS / "memory.json").read_text())
        result["planned"] = planned_large()
        (RESULTS / "memory.json").write_text(json.dumps(result, indent=2))
        (RESULTS / "memory.md").write_text(markdown(result))
        print(markdown(result))
        return
    sys.path.insert(0, str(HERE))
    from machine import describe

    if args.planned_only:
        result = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": describe(),
                  "command": ".venv/bin/python benchmarks/memory.py --planned-only", "measured": [],
                  "planned": planned_large()}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "memory_planned.json").write_text(json.dumps(result, indent=2))
        (RESULTS / "memory_planned.md").write_text(markdown(result))
        print(markdown(result))
        return

    measured = []
    for job in args.jobs.split(","):
        for rank in RANKS:
            with tempfile.TemporaryDirectory() as tmp:
                proc = subprocess.run([sys.executable, __file__, "--one", job, str(rank), "--steps", str(args.steps),
                                       "--out", str(Path(tmp) / "run")], capture_output=True, text=True)
                line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
                if proc.returncode or not line:
                    raise SystemExit(f"{job} rank {rank} failed:\n{proc.stderr[-3000:]}")
                measured.append(json.loads(line[0][7:]))
                r = measured[-1]
                print(f"{job} rank {rank}: peak {r['peak_rss'] / GB:.2f} GB, planned {r['planned_peak'] / GB:.2f} GB "
                      f"({r['seconds']:.0f} s)", flush=True)
    result = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": describe(),
              "command": "flock /tmp/r1lab-heavy.lock .venv/bin/python benchmarks/memory.py" +
                         (f" --steps {args.steps}" if args.steps != 2 else ""),
              "measured": measured, "planned": planned_large()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "memory.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
