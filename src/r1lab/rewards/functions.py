"""Rule-based reward functions (the R1-Zero pair, accuracy and format, plus partial credit toward the format:
format_partial, by structure, and tag_count, by tags).

Two signatures, both registered in ``REWARDS``:

- per completion: ``fn(completion, example, ctx) -> float``. A function that cannot score raises; the combiner
  records the error and the sample gets no advantage (docs/architecture.md principle 6).
- batched (marked with ``@batched``): ``fn(completions, examples, ctx) -> list[float | BaseException]``, for
  rewards that pay off when a whole batch is scored at once (a worker pool of sandboxes or verifiers, one model
  forward for a reward model). An exception *in the list* fails that one sample; raising fails the whole batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from r1lab.params import declare_params, merge_params
from r1lab.registry import Registry
from r1lab.rewards.extract import extract_answer
from r1lab.types import Example

REWARDS: Registry = Registry("reward function")


@dataclass
class RewardContext:
    """What reward functions may need beyond the completion: the task's verifier and extraction settings."""

    task: object  # r1lab.tasks.base.Task
    extraction: tuple[str, ...] = ("answer_tag", "boxed", "last_number")
    params: dict = field(default_factory=dict)  # reward name -> its keyword parameters (config: rewards.params)
    tokenizer: object | None = None  # for length-aware rewards (token counts of a completion)
    max_new_tokens: int | None = None  # the rollout length limit, for overlong / length-scaled rewards
    # Tokens the policy generated for the completion being scored (EOS included, as it counts against
    # max_new_tokens). Set per sample by ``score_batch`` when the caller passes the rollout's lengths; length
    # rewards then use it instead of re-tokenising the decoded text.
    completion_tokens: int | None = None

    def params_of(self, name: str) -> dict:
        """The parameters configured for reward ``name`` (empty when none)."""
        return dict(self.params.get(name) or {})


def reward_params(ctx: RewardContext, name: str, defaults: dict) -> dict:
    """The configured parameters of reward ``name`` (``rewards.params.<name>``) over ``defaults``."""
    return merge_params(f"reward {name!r}", ctx.params_of(name), defaults, f" in rewards.params.{name}")


def check_reward_params(name: str, params: dict) -> None:
    """Config-time check of ``rewards.params.<name>``: a reward with its own ``check_params`` runs it; one with
    declared defaults rejects unknown keys; one that declares nothing takes no parameters."""
    fn = REWARDS.get(name)
    checker = getattr(fn, "check_params", None)
    if checker is not None:
        checker(params)
    elif hasattr(fn, "param_defaults"):
        merge_params(f"reward {name!r}", params, fn.param_defaults, f" in rewards.params.{name}")
    elif params:
        raise ValueError(f"reward {name!r} takes no parameters, got {', '.join(sorted(params))}")


def batched(fn: Callable) -> Callable:
    """Mark a reward function as batched: ``fn(completions, examples, ctx) -> list[float | BaseException]``."""
    fn.batched = True
    return fn


def is_batched(fn: Callable) -> bool:
    return getattr(fn, "batched", False)


@REWARDS.register("accuracy")
def accuracy_reward(completion: str, example: Example, ctx: RewardContext) -> float:
    """The task's own verifier on the extracted answer (0 when nothing can be extracted)."""
    answer = extract_answer(completion, ctx.extraction)
    if answer is None:
        return 0.0
    return float(ctx.task.score(answer, example))


# R1-Zero template: reasoning in <think> </think>, then the answer in <answer> </answer>, nothing else around.
# Each block must hold a non-space character; the answer may not sit inside the thinking.
_FORMAT = re.compile(
    r"^\s*<think>(?:(?!</?think>|</?answer>).)*\S(?:(?!</?think>|</?answer>).)*</think>"
    r"\s*<answer>(?:(?!</?answer>|</?think>).)*\S(?:(?!</?answer>|</?think>).)*</answer>\s*$",
    re.DOTALL,
)


@REWARDS.register("format")
def format_reward(completion: str, example: Example, ctx: RewardContext) -> float:
    """1 when the whole completion is ``<think>...</think> <answer>...</answer>`` (non-blank blocks, no nesting)."""
    return 1.0 if _FORMAT.match(completion) else 0.0


@REWARDS.register("tag_count")
def tag_count_reward(completion: str, example: Example, ctx: RewardContext) -> float:
    """Partial credit, 0.25 per tag that appears exactly once: a gradient toward the format before it is met."""
    tags = ("<think>", "</think>", "<answer>", "</answer>")
    return sum(0.25 for tag in tags if completion.count(tag) == 1)


def _think_block_end(completion: str) -> int | None:
    """Index just past the one ``</think>`` closing a non-blank block that the completion opens with, else None."""
    text = completion.lstrip()
    if not text.startswith("<think>") or completion.count("<think>") != 1 or completion.count("</think>") != 1:
        return None
    body, _, _ = text[len("<think>"):].partition("</think>")
    if not body.strip():
        return None
    return completion.index("</think>") + len("</think>")


@REWARDS.register("format_partial")
def format_partial_reward(completion: str, example: Example, ctx: RewardContext) -> float:
    """Partial credit on the way to ``format`` (the strict one), 0.25 for each of: the completion opens with its
    one ``<think>``; a non-blank thinking block closed by its one ``</think>``; a non-blank ``<answer>...</answer>``
    after it; the whole strict format. Equals 1 exactly when ``format`` does, so at the end the two agree, while a
    model that starts to think but never answers already earns a gradient toward the format."""
    score = 0.25 if completion.lstrip().startswith("<think>") and completion.count("<think>") == 1 else 0.0
    end = _think_block_end(completion)
    if end is None:
        return score
    score += 0.25
    after = _ANSWER_BLOCK.search(completion, end)
    if after is not None and after.group(1).strip():
        score += 0.25
    return score + (0.25 if _FORMAT.match(completion) else 0.0)


_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
