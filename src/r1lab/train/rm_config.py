"""The typed config of ``r1lab rm`` (the reward model on preference pairs), in the style of ``r1lab.config``: one
``option()`` per key, listed by ``r1lab rm --help``. It lives beside its job (``r1lab.train.reward_model``) and
imports nothing heavy, so ``--help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1lab.config import (FSDP_HELP, LOW_PRECISION_UPDATE_HELP, LOW_PRECISION_UPDATES, PARALLEL_HELP, TIMEOUT_HELP,
                          TRAIN_DTYPES, check_low_precision_update, option, require)
from r1lab.train.lora_config import LoRAConfig


@dataclass
class RMModelConfig:
    name: str = option("smollm2-135m", "causal LM whose backbone initialises the reward model (HF folder, .gguf, "
                                       "cached hub id or smollm2-135m); the one-output score head starts fresh")
    dtype: str = option("float32", "dtype of the trained weights; bfloat16/float16 weights are updated as "
                                   "model.low_precision_update says", TRAIN_DTYPES)
    low_precision_update: str = option("auto", LOW_PRECISION_UPDATE_HELP, LOW_PRECISION_UPDATES)
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda when available)")

    def check(self) -> None:
        check_low_precision_update(self.dtype, self.low_precision_update, "model.dtype")


@dataclass
class RMDataConfig:
    path: str = option("builtin", "preference pairs: a .jsonl file of {prompt, chosen, rejected} rows, or builtin "
                                  "(the 200 pairs shipped in r1lab/data/builtin, CC0)")
    eval_path: Optional[str] = option(None, "a separate held-out .jsonl file (training pairs sharing one of its "
                                            "prompts are dropped); unset: hold out part of data.path")
    eval_fraction: float = option(0.2, "share of the distinct prompts held out, with all their pairs, when "
                                       "eval_path is unset (no prompt is on both sides)")
    seed: int = option(1234, "seed of the held-out split")
    max_length: int = option(512, "longest rendered (prompt, response) in tokens; longer pairs are dropped and "
                                  "counted (truncating would cut the end of the response, which the head reads)")

    def check(self) -> None:
        require(0 < self.eval_fraction < 1, "eval_fraction", "must be in (0, 1)")
        require(self.max_length >= 8, "max_length", "must be >= 8")


@dataclass
class RMTrainConfig:
    steps: int = option(100, "optimizer steps")
    pairs_per_step: int = option(16, "preference pairs per optimizer step")
    micro_batch_size: int = option(8, "pairs per forward/backward pass (2 sequences each); gradients accumulate "
                                      "over the rest of the step")
    lr: float = option(1e-5, "peak learning rate (AdamW)")
    warmup_steps: int = option(5, "linear warm-up steps")
    schedule: str = option("linear", "learning-rate decay after warm-up", ("constant", "linear", "cosine"))
    min_lr_ratio: float = option(0.1, "final lr as a fraction of the peak (linear/cosine)")
    weight_decay: float = option(0.0, "AdamW weight decay (not applied to norms and biases)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    max_grad_norm: float = option(1.0, "gradient clipping threshold (0 = off)")
    margin: float = option(0.0, "Bradley-Terry margin: the loss is -log sigmoid(r_chosen - r_rejected - margin) "
                                "(Llama 2, eq. 2); 0 = the plain Bradley-Terry loss")
    freeze_layers: int = option(0, "freeze the embeddings and the first N transformer layers (0 = train all; "
                                   "backward stops at the first trained layer); -1 = freeze the whole backbone and "
                                   "train only the head on features computed once (a linear probe; fastest on CPU)")
    seed: int = option(0, "seed of the head's initialisation and the pair order")
    threads: int = option(0, "torch CPU threads (0 = torch default)")
    parallel: str = option("ddp", PARALLEL_HELP + FSDP_HELP, ("ddp", "fsdp"))
    collective_timeout_minutes: float = option(10.0, TIMEOUT_HELP)
    time_limit_minutes: float = option(0.0, "stop (evaluate, checkpoint, save) once training has taken this many "
                                            "minutes, evaluation excluded; 0 = no limit")

    def check(self) -> None:
        require(self.steps >= 1, "steps", "must be >= 1")
        require(self.pairs_per_step >= 1, "pairs_per_step", "must be >= 1")
        require(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.margin >= 0, "margin", "must be >= 0")
        require(self.freeze_layers >= -1, "freeze_layers", "must be >= 0, or -1 (train only the head)")


@dataclass
class RMEvalConfig:
    every: int = option(10, "held-out pairwise accuracy every N steps (also before step 1 and after the last); "
                            "0 = off")
    batch_size: int = option(16, "pairs per forward pass at evaluation (and when computing the features of "
                                 "train.freeze_layers=-1)")

    def check(self) -> None:
        require(self.every >= 0, "every", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class RMLogConfig:
    output_dir: str = option("runs/rm", "run folder: config, metrics, per-pair held-out scores, plot, checkpoints, "
                                        "final/ (the reward model)")
    checkpoint_every: int = option(20, "checkpoint every N steps (0 = only at the end)")
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep")
    tensorboard: bool = option(True, "write TensorBoard event files")
    progress: bool = option(True, "show a progress bar with ETA")


@dataclass
class RMConfig:
    """A reward model (Bradley-Terry on preference pairs) for the `reward_model` reward of GRPO."""

    model: RMModelConfig = field(default_factory=RMModelConfig)
    data: RMDataConfig = field(default_factory=RMDataConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)
    eval: RMEvalConfig = field(default_factory=RMEvalConfig)
    log: RMLogConfig = field(default_factory=RMLogConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # the score head is always trained and saved with it
