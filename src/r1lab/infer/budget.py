"""Budget forcing (s1: Muennighoff et al. 2025, "s1: Simple test-time scaling", arXiv 2501.19393, section 3.1).

The thinking is controlled from outside the model:
- cap: once the thinking reaches ``max_thinking_tokens``, it is ended by force (the end-of-thinking delimiter and
  the answer prefix are appended) and the model must answer;
- extend: when the model ends its thinking (writes ``</think>`` or stops) before the cap, the delimiter is dropped
  and "Wait" appended, up to ``num_waits`` times, so it reconsiders (s1 found this extrapolates performance).

The answer is read from the forced answer block (``_answer``). Tokens counted are the ones the model generated
(thinking and answer); the forced text ("Wait", the delimiters, the answer prefix) is not generated, not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from r1lab.infer.base import METHODS, Answer, InferContext, declare, method_params

if TYPE_CHECKING:
    from r1lab.types import Example


def _join(text: str, addition: str) -> str:
    """``addition`` after ``text``, separated by a space unless one side already has whitespace there."""
    if not text or text[-1].isspace() or addition[:1].isspace():
        return text + addition
    return f"{text} {addition}"


def _answer(ctx: InferContext, block: str, thinking: str) -> str | None:
    """The answer in the forced answer block (extracted, e.g. the last number of "so the answer is 9", or the block
    itself when nothing is extracted); from the thinking when the block is empty."""
    if block.strip():
        return ctx.answer_of(block) or block.strip()
    return ctx.answer_of(thinking)


@METHODS.register("budget_forcing")
@declare(max_thinking_tokens=128, num_waits=0, wait="Wait", think_open="<think>\n", think_close="</think>",
         answer_prefix="\n<answer>", answer_stop="</answer>", max_answer_tokens=16, instruction=None)
def budget_forcing(examples: list["Example"], ctx: InferContext, params: dict) -> list[Answer]:
    """budget forcing (s1): cap the thinking at max_thinking_tokens, or extend it with "Wait" up to num_waits times"""
    p = method_params("budget_forcing", params, budget_forcing.param_defaults)
    budget, close = int(p["max_thinking_tokens"]), p["think_close"]
    if budget < 1 or p["num_waits"] < 0 or p["max_answer_tokens"] < 1:
        raise ValueError("method 'budget_forcing': max_thinking_tokens and max_answer_tokens must be >= 1, "
                         "num_waits >= 0")
    heads = [ctx.render(e, p["instruction"]) + p["think_open"] for e in examples]
    thinking, used, waits = [""] * len(examples), [0] * len(examples), [0] * len(examples)
    capped = [False] * len(examples)
    active = list(range(len(examples)))
    while active:  # every round continues each still-thinking problem up to its remaining budget
        groups = ctx.generator.complete([heads[i] + thinking[i] for i in active], 1, ctx.sampling, stop=[close],
                                        max_tokens=[budget - used[i] for i in active])
        still = []
        for i, (c,) in zip(active, groups):
            thinking[i] += c.text[: -len(c.stop)] if c.finish == "stop" else c.text
            used[i] += c.tokens
            if c.finish == "length" or used[i] >= budget:
                capped[i] = True  # the cap: thinking ends here whatever the model wanted
            elif waits[i] < p["num_waits"]:
                thinking[i] = _join(thinking[i], p["wait"])  # the model tried to stop: make it reconsider
                waits[i] += 1
                still.append(i)
        active = still

    tails = [close + p["answer_prefix"] for _ in examples]
    stop = [p["answer_stop"]] if p["answer_stop"] else []
    answers = ctx.generator.complete([h + t + tail for h, t, tail in zip(heads, thinking, tails)], 1, ctx.sampling,
                                     stop=stop, max_tokens=[p["max_answer_tokens"]] * len(examples))
    out = []
    for i, (c,) in enumerate(answers):
        block = c.text[: -len(c.stop)] if c.finish == "stop" else c.text
        response = p["think_open"] + thinking[i] + tails[i] + block + p["answer_stop"]
        out.append(Answer(_answer(ctx, block, thinking[i]), response, used[i] + c.tokens,
                          info={"thinking_tokens": used[i], "answer_tokens": c.tokens, "waits": waits[i],
                                "capped": capped[i]}))
    return out
