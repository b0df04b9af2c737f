"""Budget forcing (s1): "Wait" really is appended when the model tries to stop, and the thinking really is cut at
the token budget (scripted replies give exact token counts; a real tiny model checks the cap holds)."""

from __future__ import annotations

import pytest

from r1lab.infer import METHODS
from r1lab.types import Example

EX = [Example("e0", "5", prompt="2+3?")]


def thinker(thought: str, answer: str = "5</answer>"):
    """Thinks ``thought`` each time it is asked to think; answers ``answer`` once the answer block is open."""
    return lambda prompt, i: answer if prompt.endswith("<answer>") else thought


def test_extend_appends_wait_each_time_the_model_stops(scripted_ctx):
    ctx, engine = scripted_ctx(thinker(", fine</think>"))
    (a,) = METHODS.get("budget_forcing")(EX, ctx, {"num_waits": 2, "max_thinking_tokens": 50})
    thinking_prompts = engine.prompts[:3]
    assert thinking_prompts[0].endswith("A:<think>\n")
    assert thinking_prompts[1].endswith("<think>\n, fine Wait")
    assert thinking_prompts[2].endswith("<think>\n, fine Wait, fine Wait")
    assert engine.prompts[3].endswith(", fine Wait, fine Wait, fine</think>\n<answer>")  # then forced to answer
    assert a.text == "<think>\n, fine Wait, fine Wait, fine</think>\n<answer>5</answer>"
    assert a.answer == "5"
    # 3 rounds x (6 characters + "</think>") thinking, then "5" + "</answer>"
    assert a.info == {"thinking_tokens": 21, "answer_tokens": 2, "waits": 2, "capped": False}
    assert a.tokens == 23


def test_cap_cuts_the_thinking_at_the_budget(scripted_ctx):
    ctx, engine = scripted_ctx(thinker("abcdefghij and on and on", answer="9"))
    (a,) = METHODS.get("budget_forcing")(EX, ctx, {"max_thinking_tokens": 4, "num_waits": 3})
    assert engine.prompts[1].endswith("<think>\nabcd</think>\n<answer>")  # 4 tokens of thought, then forced out
    assert a.text == "<think>\nabcd</think>\n<answer>9</answer>"  # the answer block is closed for it
    assert a.info == {"thinking_tokens": 4, "answer_tokens": 2, "waits": 0, "capped": True}


def test_waits_stop_at_the_budget(scripted_ctx):
    ctx, _ = scripted_ctx(thinker(", fine</think>"))
    (a,) = METHODS.get("budget_forcing")(EX, ctx, {"num_waits": 5, "max_thinking_tokens": 10})
    # round 1: 7 tokens and a "Wait"; round 2: only 3 tokens of budget left, then the cap
    assert a.info["thinking_tokens"] == 10 and a.info["waits"] == 1 and a.info["capped"]
    assert a.text.startswith("<think>\n, fine Wait, f</think>")


def test_budget_holds_on_a_real_model(tiny_model_dir):
    from r1lab.infer.base import InferContext
    from r1lab.infer.generation import EngineGenerator
    from r1lab.models.loading import load_model
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.native_engine import NativeEngine
    from r1lab.tasks.base import Task, normalised_match

    loaded = load_model(str(tiny_model_dir))
    tok = loaded.tokenizer
    ctx = InferContext(generator=EngineGenerator(NativeEngine(loaded.model, tok, batch_size=8), tok),
                       render=lambda e, instruction: e.question, sampling=SamplingParams(1.0, 1.0, 0, 64),
                       task=Task("t", [Example("x", "1", prompt="x")], [], lambda a, e: normalised_match(a, e.answer)))
    examples = [Example(f"e{i}", "5", prompt=f"{i}+3=") for i in range(4)]
    answers = METHODS.get("budget_forcing")(examples, ctx, {"max_thinking_tokens": 6, "num_waits": 1,
                                                            "max_answer_tokens": 3})
    for a in answers:
        assert a.info["thinking_tokens"] <= 6 and a.info["answer_tokens"] <= 3
        assert a.tokens == a.info["thinking_tokens"] + a.info["answer_tokens"]
        thought = a.text[len("<think>\n"): a.text.index("</think>")]
        forced = a.info["waits"] * len(tok(" Wait", add_special_tokens=False)["input_ids"])
        assert len(tok(thought, add_special_tokens=False)["input_ids"]) <= 6 + forced


ANSWER_CASES = [
    ("So, the answer is 5.</answer>", "5", "prose in the answer block: its last number"),
    ("five</answer>", "five", "nothing to extract: the block itself"),
    ("</answer>", "3", "an empty block: the thinking's answer"),
]


@pytest.mark.parametrize("block, expected", [c[:2] for c in ANSWER_CASES], ids=[c[2] for c in ANSWER_CASES])
def test_the_answer_comes_from_the_forced_block(scripted_ctx, block, expected):
    ctx, _ = scripted_ctx(thinker("1 + 2 = 3</think>", answer=block))
    (a,) = METHODS.get("budget_forcing")(EX, ctx, {"max_answer_tokens": 64})
    assert a.answer == expected


def test_bad_params_are_named(scripted_ctx):
    ctx, _ = scripted_ctx(thinker("x"))
    with pytest.raises(ValueError, match="unknown parameter.*max_thinking_tokens"):
        METHODS.get("budget_forcing")(EX, ctx, {"budget": 3})
    with pytest.raises(ValueError, match="must be >= 1"):
        METHODS.get("budget_forcing")(EX, ctx, {"max_thinking_tokens": 0})
