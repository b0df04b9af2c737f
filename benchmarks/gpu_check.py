"""GPU check of GRPO: seconds per step, generated tokens/s, MFU and peak GPU memory for random-weight models built
from configs in code (no download): SmolLM2-135M's config and a 1.5B Qwen2-style config. Cases: the native and the
hf engine at 1 rank (ddp), ddp and fsdp at N ranks (N = the GPUs, when N > 1; at one rank fsdp shards nothing
and is ddp), vLLM when importable. The whole check stops starting cases after --budget-s seconds (default 420, so
scripts/gpu_check.sh ends within 8 minutes) and records the cases it skipped.

FLOPs per step are counted as 8 * N * G: 2 * N * G for generating G tokens and 6 * N * G for the update's forward
and backward over them (N = parameters outside the embeddings; attention's sequence-dependent FLOPs and the prompt
tokens are left out, so the MFU is a lower bound). MFU = FLOPs per step / seconds per step / (peak bf16 dense
FLOP/s of one GPU x ranks), with the peak taken from the GPU's name (H100/H200: 989e12, A100: 312e12; other GPUs:
not reported).

    python benchmarks/gpu_check.py --out DIR            # on a GPU machine (scripts/gpu_check.sh)
    python benchmarks/gpu_check.py --smoke --out DIR    # on a CPU: a tiny config, gloo, the same code path
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import describe as describe_machine  # noqa: E402  (benchmarks/machine.py)

# Llama / Qwen2 configs of the models measured, written here so nothing is downloaded
CONFIGS = {
    "smollm2-135m": {"arch": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                     "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                     "tie_word_embeddings": True, "rope_theta": 100000.0},
    "qwen2-1.5b": {"arch": "qwen2", "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
                   "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                   "tie_word_embeddings": True, "rope_theta": 1000000.0},
    "smoke": {"arch": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True, "rope_theta": 10000.0},
}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def tokenizer_for(vocab_size: int):
    """r1lab's character tokenizer (chat template, R1 tags) with filler tokens up to ``vocab_size``, so every id a
    random model samples decodes."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from r1lab.models.tiny import CHAT_TEMPLATE, SPECIAL, TAGS

    vocab = {tok: i for i, tok in enumerate(SPECIAL + TAGS)}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    for i in range(len(vocab), vocab_size):
        vocab[f"<x{i}>"] = i
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL)
    core.add_tokens(TAGS)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token=None)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(name: str, folder: Path) -> dict:
    """A random-weight HF folder for ``name``'s config; returns its parameter counts."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    spec = dict(CONFIGS[name])
    arch = spec.pop("arch")
    tok = tokenizer_for(spec["vocab_size"])
    config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    config = config_cls(**spec, max_position_embeddings=4096, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = model_cls(config)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    total = sum(p.numel() for p in model.parameters())
    return {"params": total, "non_embedding_params": total - model.get_input_embeddings().weight.numel()}


def worker(argv: list[str]) -> int:
    """One rank of a case: r1lab's CLI, then this rank's peak memory into $GPU_CHECK_PEAK_DIR."""
    import torch

    from r1lab.cli import main

    code = main(argv)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    rank = os.environ.get("RANK", "0")
    Path(os.environ["GPU_CHECK_PEAK_DIR"], f"rank{rank}.json").write_text(json.dumps({"peak_bytes": peak}))
    return code


def run_case(model_dir: Path, out: Path, ranks: int, parallel: str, engine: str, steps: int, device: str,
             shape: dict, timeout_s: float) -> dict:
    sets = {"model.name": model_dir, "model.device": device, "train.parallel": parallel, "rollout.engine": engine,
            "log.output_dir": out / "run", "train.steps": steps, "eval.every": 0, "log.progress": "false",
            "log.tensorboard": "false", "log.checkpoint_every": 0, "train.prompts_per_step": shape["prompts"],
            "rollout.group_size": shape["group"], "rollout.max_new_tokens": shape["tokens"],
            "rollout.min_new_tokens": shape["tokens"], "algo.skip_zero_advantage": "false",
            "rewards.weights": "{accuracy: 1.0}", "prompt.system": "", "prompt.instruction": "", "prompt.prefill": "",
            "train.micro_batch_size": shape["micro"], "task.eval_size": 4}
    args = ["grpo", "configs/zero_cpu.yaml"] + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    peak_dir = out / "peak"
    peak_dir.mkdir(parents=True, exist_ok=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    env = {**os.environ, "GPU_CHECK_PEAK_DIR": str(peak_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, str(Path(__file__).resolve()), "--worker", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=HERE.parent)
    if proc.returncode != 0:
        return {"error": (proc.stdout + proc.stderr)[-2000:]}
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if r.get("time/step_s")][1:] or [r for r in records if r.get("time/step_s")]
    step_s = sum(r["time/step_s"] for r in timed) / len(timed)
    tokens = sum(r["tokens/generated"] for r in timed) / len(timed)
    peaks = [json.loads(p.read_text())["peak_bytes"] for p in sorted(peak_dir.glob("rank*.json"))]
    return {"step_s": step_s, "generate_s": sum(r["time/generate_s"] for r in timed) / len(timed),
            "generated_tokens_per_step": tokens, "generated_tokens_per_s": tokens / step_s,
            "peak_memory_gb_per_rank": max(peaks) / 1e9,
            "peak_memory_kind": "torch.cuda.max_memory_allocated" if device == "cuda" else "ru_maxrss (CPU)"}


def peak_flops(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny config on the CPU (gloo, 2 ranks for fsdp)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "results/gpu_check"))
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no case after this many seconds")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    import torch

    started = time.monotonic()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    gpus = 2 if device == "cpu" else torch.cuda.device_count()  # smoke: 2 gloo ranks stand in for 2 GPUs
    models = ["smoke"] if args.smoke else ["smollm2-135m", "qwen2-1.5b"]
    shape = ({"prompts": 2, "group": 2, "tokens": 8, "micro": 4} if args.smoke
             else {"prompts": 8, "group": 8, "tokens": 256, "micro": 16})
    try:
        import vllm  # noqa: F401

        engines = ["native", "hf", "vllm"]
    except ImportError:
        engines = ["native", "hf"]
    cases = [(e, 1, "ddp") for e in engines] + ([("native", gpus, p) for p in ("ddp", "fsdp")] if gpus > 1 else [])
    args.out.mkdir(parents=True, exist_ok=True)
    peak = peak_flops(device)
    rows = []
    for name in models:
        folder = args.out / "models" / name
        counts = build_model(name, folder)
        for engine, ranks, parallel in cases:
            left = args.budget_s - (time.monotonic() - started)
            row = {"model": name, **counts, "engine": engine, "ranks": ranks, "parallel": parallel}
            if left < 30:
                rows.append({**row, "skipped": f"time budget of {args.budget_s:.0f} s spent"})
                continue
            try:
                row.update(run_case(folder, args.out / f"{name}-{engine}-{ranks}-{parallel}", ranks, parallel, engine,
                                    args.steps, device, shape, timeout_s=left))
            except subprocess.TimeoutExpired:
                row["skipped"] = "ran past the time budget"
            if "step_s" in row:
                flops = 8 * counts["non_embedding_params"] * row["generated_tokens_per_step"]
                row["flops_per_step"] = flops
                row["mfu"] = flops / row["step_s"] / (peak * ranks) if peak else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"machine": describe_machine(), "device": device, "gpus": gpus, "shape": shape, "steps": args.steps,
              "flops_counted_as": "8 * non-embedding params * generated tokens per step (2 generate + 6 update)",
              "peak_flops_per_gpu": peak, "seconds": time.monotonic() - started, "rows": rows}
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'gpu_check.json'} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
