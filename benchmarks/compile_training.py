"""torch.compile of training's decoder layers: does it pay on this CPU? (Measured: no, so r1lab trains eagerly.)

One GRPO micro-batch of 16 sequences (2 prompts of 40 tokens x 8 completions of 128, one of 100 to change the
shape) through SmolLM2-135M in fp32, forward + backward with r1lab's ``completion_logprobs``, eager or with every
decoder layer compiled (``layer.compile(dynamic=True)``). Prints the first call (compilation included) and the
steady-state calls; run each mode in its own process:

    .venv/bin/python benchmarks/compile_training.py eager
    .venv/bin/python benchmarks/compile_training.py compiled
"""

from __future__ import annotations

import argparse
import time

import torch

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)
from r1lab.algos.logprobs import completion_logprobs
from r1lab.models.loading import load_model

WIDTHS = (128, 128, 128, 100, 128)  # completion widths of the timed calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("eager", "compiled"))
    args = parser.parse_args()
    print(f"machine: {describe_machine()}; {torch.get_num_threads()} threads")
    model = load_model("smollm2-135m").model.train()
    gen = torch.Generator().manual_seed(0)
    prompt_ids, prompt_mask = torch.randint(100, 40000, (2, 40), generator=gen), torch.ones(2, 40, dtype=torch.long)
    prompt_index = torch.arange(16) // 8

    def micro_batch(width: int) -> float:
        ids, mask = torch.randint(100, 40000, (16, width), generator=gen), torch.ones(16, width)
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, ids, mask, prompt_index=prompt_index)
        logp.sum().backward()
        return time.perf_counter() - start

    if args.mode == "compiled":
        for layer in model.model.layers:
            layer.compile(dynamic=True)
    print(f"{args.mode}: first call {micro_batch(128):.1f} s (compilation included when compiled)")
    times = [micro_batch(w) for w in WIDTHS]
    print(f"{args.mode}: calls of widths {list(WIDTHS)}: " + ", ".join(f"{t:.2f}" for t in times) + " s")


if __name__ == "__main__":
    main()
