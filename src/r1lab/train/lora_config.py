"""The ``lora`` section of the training jobs (grpo / zero, sft): LoRA adapters through PEFT
(``r1lab.models.lora``). Beside its jobs, in the style of ``r1lab.config``; imports nothing heavy.

``r1lab.config`` imports this module as a module object (``import ... as lora_config``), so either may be imported
first."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import option, require

LORA_HELP = ("LoRA through PEFT: the base weights stay frozen and only low-rank adapters (W + alpha/rank * B A on "
             "each target layer) are trained; 0 = full fine-tuning")


@dataclass
class LoRAConfig:
    rank: int = option(0, LORA_HELP)
    alpha: float = option(32.0, "LoRA scale numerator: the adapter's update is alpha / rank * B A")
    dropout: float = option(0.0, "dropout on the adapter's input while training (0 keeps the trained forward "
                                 "equal to the merged generation copy's)")
    target_modules: list[str] = option([], "layer names (suffixes) that get adapters; empty = every linear layer of "
                                           "the attention and MLP blocks (q/k/v/o and gate/up/down for Llama)")
    modules_to_save: list[str] = option([], "modules trained in full beside the adapters and saved with them "
                                            "(e.g. embed_tokens)")
    init_from: str = option("", "a PEFT adapter folder (adapter_config.json inside, e.g. a run's final/adapter) "
                                "to continue training; rank, alpha, dropout and targets then come from it")

    def check(self) -> None:
        require(self.rank >= 0, "rank", "must be >= 0 (0 = off)")
        require(self.alpha > 0, "alpha", "must be > 0")
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        require(not self.init_from or self.rank > 0, "init_from", "needs lora.rank > 0 (any value: the adapter's "
                                                                  "own rank is used)")

    @property
    def enabled(self) -> bool:
        return self.rank > 0
