"""Configs of the distillation-data jobs: `r1lab generate`, `r1lab filter`, `r1lab journey` (trace format:
docs/distillation.md). Kept beside the jobs they configure; the shared pieces (option, validation, Task/Prompt
sections) come from r1lab.config."""

from __future__ import annotations

from dataclasses import dataclass, field

from r1lab.config import AUTO_DTYPE_HELP, GENERATION_DTYPES, PromptConfig, TaskConfig, option, require


# ---------------------------------------------------------------------------------------------------------------
# Distillation data: `r1lab generate`, `r1lab filter`, `r1lab journey` (trace format: docs/distillation.md)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TeacherConfig:
    name: str = option("program:arithmetic",
                       "who writes the traces: program:arithmetic or program:countdown (exact step-by-step solvers for "
                       "rg:basic_arithmetic / rg:countdown), a local model (HF folder, .gguf file, hub id in the local "
                       "cache, smollm2-135m), or, when url is set, the model name sent to the endpoint")
    url: str = option("", "base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (r1lab serve, vLLM, "
                          "SGLang, llama.cpp server) or https://api.deepseek.com/v1; empty = not an endpoint")
    api: str = option("chat", "endpoint API: chat (POST /chat/completions with messages) or completions (POST "
                              "/completions with the prompt rendered by prompt.template)", ("chat", "completions"))
    api_key_env: str = option("", "endpoint: NAME of the environment variable holding the API key, e.g. "
                                  "DEEPSEEK_API_KEY (the key is never written to disk or logs); empty = no key")
    concurrency: int = option(8, "endpoint: requests in flight at once (threads)")
    max_retries: int = option(5, "endpoint: retries of a request after a connection error, timeout, 429 or 5xx")
    backoff_s: float = option(1.0, "endpoint: wait before the first retry, doubled each retry (max 60 s); a "
                                   "Retry-After header wins")
    timeout_s: float = option(600.0, "endpoint: seconds to wait for one response")
    dtype: str = option("float32", f"local model: dtype it generates in; {AUTO_DTYPE_HELP}", GENERATION_DTYPES)
    device: str = option("auto", "local model: cpu, cuda, cuda:N, or auto (cuda when available)")
    batch_size: int = option(32, "local model: sequences generated at once (whole groups of k)")
    format: str = option("plain", "program teachers: plain (steps ending with the answer, e.g. 'So 47 + 38 = 85.' or "
                                  "\\boxed{expr}) or think (<think>steps</think>\\n<answer>answer</answer>)",
                         ("plain", "think"))
    error_rate: float = option(0.0, "program teachers: probability that a trace makes one realistic mistake "
                                    "(dropped carry/borrow, column sum off by one, wrong operator), so rejection "
                                    "sampling and journey learning have wrong attempts")
    price_input: float = option(0.0, "USD per million input (prompt) tokens, for the cost per row and in the "
                                     "summary; the seeds quote DeepSeek-R1 at 0.55 and OpenAI o1 at 15")
    price_output: float = option(0.0, "USD per million output (completion) tokens; the seeds quote DeepSeek-R1 at "
                                      "2.19 and OpenAI o1 at 60")

    def check(self) -> None:
        require(self.concurrency >= 1, "concurrency", "must be >= 1")
        require(self.max_retries >= 0, "max_retries", "must be >= 0")
        require(self.backoff_s >= 0 and self.timeout_s > 0, "backoff_s", "backoff_s must be >= 0, timeout_s > 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(0.0 <= self.error_rate <= 1.0, "error_rate", "must be in [0, 1]")
        require(self.price_input >= 0 and self.price_output >= 0, "price_input", "prices must be >= 0")
        require(not (self.url and self.name.startswith("program:")), "url",
                "a program teacher runs locally; leave url empty or name the endpoint's model in teacher.name")


@dataclass
class TeacherPromptConfig(PromptConfig):
    system: str = option("", "system prompt (chat template and chat endpoints; empty = none)")
    instruction: str = option("Please reason step by step, and put your final answer within \\boxed{}.",
                              "text appended to every question for the teacher (the default is DeepSeek's "
                              "recommended prompt for R1); program teachers ignore the prompt")


@dataclass
class GenerateSamplingConfig:
    k: int = option(4, "samples per prompt")
    temperature: float = option(0.6, "sampling temperature (0 = greedy); the R1 report samples at 0.6")
    top_p: float = option(0.95, "nucleus sampling threshold")
    max_new_tokens: int = option(1024, "longest completion; a cut one has finish_reason 'length'")
    max_prompt_tokens: int = option(0, "local model teachers: longest prompt in tokens, counted as the model sees it; "
                                       "a longer one stops the job before any generation, naming its row (or is "
                                       "left out: task.overlong_prompts=drop); 0 = auto: the model's context length "
                                       "minus sampling.max_new_tokens")
    seed: int = option(0, "sampling seed (per sample: seed + sample index; program teachers: seed, id and sample)")

    def check(self) -> None:
        require(self.k >= 1, "k", "must be >= 1")
        require(self.temperature >= 0, "temperature", "must be >= 0")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        require(self.max_prompt_tokens >= 0, "max_prompt_tokens", "must be >= 0 (0 = auto)")


@dataclass
class GenerateOutputConfig:
    path: str = option("data/traces.jsonl", "output JSONL (appended to; a re-run skips (id, sample) pairs already "
                                            "there); the summary goes to PATH.summary.json")
    split: str = option("train", "which problems of the task get traces", ("train", "eval"))
    num_prompts: int = option(0, "use the first N problems of the split (0 = all)")
    progress: bool = option(True, "show a progress bar with ETA")

    def check(self) -> None:
        require(bool(self.path), "path", "needs an output file")
        require(self.num_prompts >= 0, "num_prompts", "must be >= 0 (0 = all)")


@dataclass
class GenerateConfig:
    """Teacher traces for distillation: k samples per prompt, appended to a JSONL file (resumable)."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: TeacherPromptConfig = field(default_factory=TeacherPromptConfig)
    sampling: GenerateSamplingConfig = field(default_factory=GenerateSamplingConfig)
    output: GenerateOutputConfig = field(default_factory=GenerateOutputConfig)

    def check(self) -> None:
        require(not (self.teacher.url and self.teacher.api == "completions" and self.prompt.template == "chat"),
                "prompt.template", "the /completions API applies no chat template; use r1_zero or plain, or "
                                   "teacher.api=chat")


@dataclass
class VerifyConfig:
    enabled: bool = option(True, "rejection sampling: set `correct` on every row with the verifier and drop wrong rows")
    verifier: str = option("task", "task (the task's own scorer, as the accuracy reward; needs the task section "
                                   "generate used), math (math-verify against the row's answer, as the math reward) "
                                   "or match (numbers by value, text case/space-folded, against the row's answer)",
                           ("task", "math", "match"))
    extraction: list = option(["answer_tag", "boxed", "last_number"],
                              "answer extraction methods tried in order (as rewards.extraction)")
    threshold: float = option(1.0, "a row is correct when its score is >= this")
    keep_wrong: bool = option(False, "label rows with `correct` but keep the wrong ones (input for r1lab journey)")

    def check(self) -> None:
        from r1lab.rewards.extract import EXTRACTORS

        for name in self.extraction:
            require(name in EXTRACTORS, "extraction", f"unknown method {name!r}; allowed: {', '.join(EXTRACTORS)}")


@dataclass
class ReadabilityConfig:
    drop_truncated: bool = option(True, "drop rows with finish_reason 'length' (cut before the answer)")
    format: str = option("none", "required layout: none, or think (exactly <think>...</think> <answer>...</answer>, "
                                 "the format reward's check)", ("none", "think"))
    language: str = option("en", "target language of the chain of thought (ISO 639-1); empty = no language filter")
    min_language_share: float = option(0.95, "drop rows whose chain of thought has a smaller share of words in the "
                                             "target language (the language_consistency reward; R1's language "
                                             "mixing filter)")
    length_unit: str = option("tokens", "unit of min_length/max_length: tokens (usage.completion_tokens as the "
                                        "teacher counted them), chars or words", ("tokens", "chars", "words"))
    min_length: int = option(0, "drop shorter completions (0 = off)")
    max_length: int = option(0, "drop longer completions (0 = off)")
    max_repeated_ngrams: float = option(0.5, "drop rows whose share of repeated word n-grams exceeds this (the "
                                             "repetition reward's measure; catches loops); 1 = off")
    ngram_size: int = option(4, "n of the repetition measure")

    def check(self) -> None:
        require(0 <= self.min_language_share <= 1, "min_language_share", "must be in [0, 1]")
        require(self.min_length >= 0 and self.max_length >= 0, "min_length", "lengths must be >= 0 (0 = off)")
        require(self.max_length == 0 or self.max_length >= self.min_length, "max_length", "must be >= min_length")
        require(0 <= self.max_repeated_ngrams <= 1, "max_repeated_ngrams", "must be in [0, 1]")
        require(self.ngram_size >= 1, "ngram_size", "must be >= 1")


@dataclass
class DedupConfig:
    exact: bool = option(True, "drop exact duplicates (same text after lower-casing and collapsing white space)")
    near: bool = option(True, "drop near duplicates: word-shingle Jaccard similarity >= threshold")
    threshold: float = option(0.9, "Jaccard similarity at or above which two completions are near duplicates")
    shingle_words: int = option(3, "words per shingle")
    scope: str = option("prompt", "compare completions of the same prompt only (exact Jaccard, all pairs), or "
                                  "across the whole file (MinHash + LSH candidates, then exact Jaccard)",
                        ("prompt", "global"))
    num_perm: int = option(128, "MinHash permutations (scope global)")

    def check(self) -> None:
        require(0 < self.threshold <= 1, "threshold", "must be in (0, 1]")
        require(self.shingle_words >= 1, "shingle_words", "must be >= 1")
        require(self.num_perm >= 8, "num_perm", "must be >= 8")


@dataclass
class FilterConfig:
    """Rejection sampling and readability filters over `r1lab generate` output."""

    input: str = option("data/traces.jsonl", "trace JSONL written by r1lab generate")
    output: str = option("data/filtered.jsonl", "kept rows (overwritten), with `correct` set when verify is on")
    report: str = option("", "report JSON (default: OUTPUT.report.json)")
    task: TaskConfig = field(default_factory=TaskConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    readability: ReadabilityConfig = field(default_factory=ReadabilityConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    max_per_prompt: int = option(0, "keep at most this many rows per prompt, the first ones (0 = no cap)")

    def check(self) -> None:
        require(self.input != self.output, "output", "must differ from input")
        require(self.max_per_prompt >= 0, "max_per_prompt", "must be >= 0 (0 = no cap)")


@dataclass
class JourneyConfig:
    """Journey-learning traces (O1 Replication Journey): a wrong attempt, a reflection, then the right one."""

    input: str = option("data/labelled.jsonl", "rows with `correct` (r1lab filter with verify.keep_wrong=true)")
    output: str = option("data/journey.jsonl", "the mixed journey + shortcut rows (overwritten)")
    journey_fraction: float = option(0.5, "share of journey rows in the output; the rest are shortcut (right-only) "
                                          "rows; 1 = journeys only, 0 = shortcut only")
    journeys_per_prompt: int = option(1, "journeys built per prompt (each from a different wrong attempt)")
    reflections: list = option(["Wait, let me check that again.", "Hmm, that doesn't look right. Let me redo it.",
                                "Wait, I made a mistake. Let me recompute."],
                               "reflection phrases between the wrong and the corrected path (one drawn per journey)")
    max_rows: int = option(0, "largest output (0 = as many as the mix allows)")
    seed: int = option(0, "seed of the draws (reflection phrase, pairing, mix)")

    def check(self) -> None:
        require(0 <= self.journey_fraction <= 1, "journey_fraction", "must be in [0, 1]")
        require(self.journeys_per_prompt >= 1, "journeys_per_prompt", "must be >= 1")
        require(bool(self.reflections) and all(isinstance(r, str) and r.strip() for r in self.reflections),
                "reflections", "needs at least one non-empty phrase")
        require(self.max_rows >= 0, "max_rows", "must be >= 0")
        require(self.input != self.output, "output", "must differ from input")
