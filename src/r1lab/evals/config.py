"""The typed config of ``r1lab eval``, in the style of ``r1lab.config`` (one ``option()`` per key, listed by
``r1lab eval --help``). Task and prompt sections are the training job's, so an evaluation reads the same problems
and prompts a training run used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1lab.config import AUTO_DTYPE_HELP, GENERATION_DTYPES, ConfigError, PromptConfig, TaskConfig, option, require
from r1lab.evals.metrics import DEFAULT_REFLECTION_WORDS

# Keys a prompt variant may override (the fields of EvalPromptConfig).
VARIANT_KEYS = ("template", "system", "instruction", "few_shot", "shot_answer")

# The built-in prompt-sensitivity set. The R1 report (section 5, limitations) found R1 sensitive to prompts, with
# few-shot prompting degrading it and zero-shot recommended; these variants measure that spread on any model.
BUILTIN_VARIANTS = {
    "few_shot_1": {"few_shot": 1},
    "few_shot_3": {"few_shot": 3},
    "no_system": {"system": ""},
    "reasoner_system": {"system": "You are a careful reasoner. Think step by step, check your work, then give the "
                                  "final answer."},
    "r1_zero_template": {"template": "r1_zero", "instruction": ""},
}


@dataclass
class EvalModelConfig:
    name: str = option("smollm2-135m", "HF folder, .gguf file, hub id in the local cache, or the alias smollm2-135m")
    dtype: str = option("float32", f"dtype the model generates in; {AUTO_DTYPE_HELP}. float32 by default so scores "
                                   "compare across machines; the resolved dtype is recorded", GENERATION_DTYPES)
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda when available)")
    threads: int = option(0, "torch CPU threads (0 = torch default)")


@dataclass
class EvalTaskConfig(TaskConfig):
    """The training jobs' task section, but a benchmark is evaluated whole: the train/held-out split is for training."""

    eval_size: Optional[int] = option(None, "problems evaluated. Unset: all of them with split all, the training "
                                            "jobs' default held-out set (200) with split held_out. N: the first N "
                                            "of the seeded order, i.e. the held-out set of a training run with "
                                            "task.eval_size=N")
    split: str = option("auto", "all: every problem of a fixed benchmark (humaneval, code:FILE, math:FILE, a "
                                ".jsonl/.parquet file, general; hf:SOURCE: every row of task.eval_split, else of "
                                "task.train_split); held_out: the problems a training job with this task "
                                "section holds out, to score a model trained on that task on problems it never saw "
                                "(the only choice for rg: and mix tasks, which generate their problems); auto: "
                                "held_out for rg:/mix tasks or with task.eval_path, else all",
                        ("auto", "all", "held_out"))

    def check(self) -> None:
        from r1lab.tasks import generates_problems

        require(self.eval_size is None or self.eval_size > 0, "eval_size", "must be > 0, or unset (all problems)")
        require(self.train_size > 0, "train_size", "must be > 0")
        require(not (self.split == "all" and generates_problems(self.name)), "split",
                f"{self.name} generates its problems, so there is no fixed set to evaluate all of; use held_out "
                f"(or auto)")
        require(not (self.split == "all" and self.eval_path), "eval_path",
                "names the held-out file of split held_out; to evaluate that file alone, set task.name to it")
        self.check_dataset_keys()

    def resolved_split(self) -> str:
        from r1lab.tasks import generates_problems

        if self.split != "auto":
            return self.split
        return "held_out" if generates_problems(self.name) or self.eval_path else "all"

    def resolved_eval_size(self) -> int | None:
        """None = every problem (split all)."""
        if self.eval_size is None and self.resolved_split() == "held_out":
            return TaskConfig().eval_size
        return self.eval_size


@dataclass
class EvalPromptConfig(PromptConfig):
    few_shot: int = option(0, "solved training problems shown before the question (0 = zero-shot, which the R1 "
                              "report recommends); fixed by task.seed")
    shot_answer: str = option("{answer}", "how a shown problem's answer is written; {answer} is its gold answer, "
                                          "e.g. '<answer>{answer}</answer>'")

    def check(self) -> None:
        require(self.few_shot >= 0, "few_shot", "must be >= 0")
        require("{answer}" in self.shot_answer, "shot_answer", "must contain the placeholder {answer}")


@dataclass
class SamplingConfig:
    n: int = option(16, "samples per problem (pass@k and maj@k need n >= k)")
    temperature: float = option(0.6, "sampling temperature (the R1 report's evaluation setting; 0 = greedy)")
    top_p: float = option(0.95, "nucleus sampling threshold (the R1 report's evaluation setting)")
    top_k: int = option(0, "top-k sampling (0 = off)")
    max_new_tokens: int = option(256, "longest response; longer ones are cut and counted as truncated")
    max_prompt_tokens: int = option(0, "longest prompt in tokens, counted as the model sees it in every prompt "
                                       "variant; a problem with a longer one stops the run before any generation, "
                                       "naming its row (or is left out: task.overlong_prompts=drop); 0 = auto: the "
                                       "model's context length minus sampling.max_new_tokens")
    batch_size: int = option(64, "sequences generated at once (whole groups of n)")
    seed: int = option(0, "sampling seed (part of the generation cache key)")

    def check(self) -> None:
        require(self.n >= 1, "n", "must be >= 1")
        require(self.temperature >= 0, "temperature", "must be >= 0")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        require(self.max_prompt_tokens >= 0, "max_prompt_tokens", "must be >= 0 (0 = auto)")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class MetricsConfig:
    ks: list = option([1, 2, 4, 8, 16], "k values of pass@k and maj@k (k > n is skipped; n itself is always added: "
                                        "maj@n is the R1 report's cons@n)")
    extraction: list = option(["answer_tag", "boxed", "last_number"],
                              "answer extraction methods tried in order (code tasks score the whole response)")
    reflection_words: list = option(list(DEFAULT_REFLECTION_WORDS),
                                    "phrases counted per response by reflection_rate (whole words, any case)")
    price_input: float = option(0.55, "price per million input tokens for cost_per_1k (default: the R1 API's $)")
    price_output: float = option(2.19, "price per million output tokens for cost_per_1k (default: the R1 API's $)")
    vote_subsets: int = option(256, "maj@k averages the vote over every k-subset of the n samples when there are "
                                    "at most this many, else over this many seeded random subsets")
    score_workers: int = option(4, "threads scoring responses (verifiers that run subprocesses overlap)")

    def check(self) -> None:
        require(bool(self.ks) and all(isinstance(k, int) and k >= 1 for k in self.ks), "ks",
                "must be a non-empty list of integers >= 1")
        from r1lab.rewards.extract import EXTRACTORS

        for name in self.extraction:
            require(name in EXTRACTORS, "extraction", f"unknown method {name!r}; allowed: {', '.join(EXTRACTORS)}")
        require(bool(self.reflection_words), "reflection_words", "needs at least one phrase")
        require(self.price_input >= 0 and self.price_output >= 0, "price_input", "prices must be >= 0")
        require(self.vote_subsets >= 1, "vote_subsets", "must be >= 1")
        require(self.score_workers >= 1, "score_workers", "must be >= 1")


@dataclass
class SensitivityConfig:
    builtin: bool = option(False, "also evaluate the built-in prompt variants: " + ", ".join(BUILTIN_VARIANTS))
    variants: dict = option({}, "more prompt variants: name -> overrides of prompt keys "
                                f"({', '.join(VARIANT_KEYS)}), e.g. {{terse: {{system: ''}}}}")

    def check(self) -> None:
        for name, overrides in self.variants.items():
            require(isinstance(overrides, dict), "variants", f"variant {name!r} must be a mapping of prompt keys")
            unknown = sorted(set(overrides) - set(VARIANT_KEYS))
            require(not unknown, "variants", f"variant {name!r}: unknown key(s) {', '.join(unknown)}; "
                                             f"allowed: {', '.join(VARIANT_KEYS)}")
            require(name != "default", "variants", "the name 'default' is the base prompt; choose another name")


@dataclass
class MethodConfig:
    name: str = option("sample", "sample: n independent samples and every metric; or an inference-time method of "
                                 "r1lab.infer (listed below), scored by accuracy and tokens")
    params: dict = option({}, "the method's parameters, e.g. {n: 8} (an unknown key lists the allowed ones)")

    def check(self) -> None:
        if self.name == "sample":
            require(not self.params, "params", "method 'sample' takes no params; use the sampling.* keys")
            return
        from r1lab.infer import METHODS

        if self.name not in METHODS:
            raise ConfigError(f"config key 'name': unknown method {self.name!r}; available: sample, "
                              f"{', '.join(METHODS.names())}")


@dataclass
class OutputConfig:
    output_dir: str = option("runs/eval", "run folder: results.json, completions.jsonl, report.md, PNG plots")
    cache_dir: str = option("", "generation cache ('' = $R1LAB_CACHE/generations, i.e. ~/.cache/r1lab/generations)")
    cache: bool = option(True, "reuse cached generations (keyed by model, prompt, sampling, n and seed)")
    progress: bool = option(True, "show a progress bar with ETA while generating")


@dataclass
class EvalJobConfig:
    """``r1lab eval``: n samples per problem, every metric, a report; cached so a new metric costs no generation."""

    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    task: EvalTaskConfig = field(default_factory=EvalTaskConfig)
    prompt: EvalPromptConfig = field(default_factory=EvalPromptConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    log: OutputConfig = field(default_factory=OutputConfig)

    def check(self) -> None:
        # Few-shot prompts show solved problems that are not evaluated: with split all every problem is
        if self.task.resolved_split() != "all":
            return
        asks = {"prompt.few_shot": self.prompt.few_shot}
        if self.sensitivity.builtin:
            asks["sensitivity.builtin"] = max(v.get("few_shot", 0) for v in BUILTIN_VARIANTS.values())
        for name, overrides in self.sensitivity.variants.items():
            asks[f"sensitivity.variants.{name}"] = overrides.get("few_shot", 0)
        for key, shots in asks.items():
            require(not shots, key, f"few-shot prompts ({shots} shots) show solved problems from outside the "
                                    f"evaluated set, and task.split=all evaluates every problem of {self.task.name}; "
                                    f"set task.split=held_out (shots then come from the training side)")
