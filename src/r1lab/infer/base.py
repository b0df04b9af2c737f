"""The one signature of inference-time methods, their registry, and the context they run in.

``METHODS.get(name)(examples, ctx, params) -> list[Answer]``: one Answer per example, each with the tokens the
method generated for it (all candidates, all steps), so every method can be placed on one accuracy-vs-tokens plot.
Importing this module is light (no torch): ``r1lab eval --help`` lists the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from r1lab.params import declare_params, merge_params
from r1lab.registry import Registry

if TYPE_CHECKING:  # r1lab.types imports torch
    from r1lab.types import Example

METHODS: Registry = Registry("inference method")


@dataclass
class Answer:
    """A method's final answer to one problem."""

    answer: str | None  # the extracted answer the verifier scores (None: no answer)
    text: str  # the response the answer came from
    tokens: int  # tokens generated for this problem, every candidate and step included
    candidates: int = 1  # responses (or finished beams) the answer was chosen from
    info: dict[str, Any] = field(default_factory=dict)  # method-specific trace (votes, scores, waits, beams)


@dataclass
class InferContext:
    """What a method may use. ``render(example, instruction)`` builds the prompt (``instruction=None`` keeps the
    configured one); ``generator`` is a ``TextGenerator`` (r1lab.infer.generation); ``sampling`` the base
    SamplingParams; ``prm`` an optional step scorer (r1lab.infer.prm) that overrides a method's ``prm`` param."""

    generator: Any
    render: Callable[[Example, str | None], str]
    task: Any
    sampling: Any
    extraction: tuple[str, ...] = ("answer_tag", "boxed", "last_number")
    tokenizer: Any = None
    model_name: str | None = None
    prm: Any = None
    progress: bool = False
    seed: int = 0

    def answer_of(self, text: str) -> str | None:
        from r1lab.evals.answers import answer_of

        return answer_of(text, self.task, self.extraction)

    def score(self, answer: str | None, example: Example) -> float:
        """The task verifier's score of an answer (0 for no answer)."""
        return 0.0 if answer is None else float(self.task.score(answer, example))


def method_params(name: str, params: dict, defaults: dict) -> dict:
    """``params`` over ``defaults``; an unknown key is a ValueError naming the method and the allowed keys."""
    return merge_params(f"method {name!r}", params, defaults)


declare = declare_params  # attach a method's parameters and defaults (shown by ``r1lab eval --help``)
