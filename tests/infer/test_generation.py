"""r1lab.infer.generation: stop strings and per-prompt token caps on top of a RolloutEngine, counted in tokens."""

from __future__ import annotations

from r1lab.infer.generation import EngineGenerator
from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.native_engine import NativeEngine


def test_stop_strings_and_caps_on_scripted_text(scripted_ctx):
    replies = {"p1": "ab</think>cd", "p2": "abcdefgh", "p3": "xy", "p4": "one\ntwo"}
    ctx, engine = scripted_ctx(lambda prompt, i: replies[prompt])
    gen = ctx.generator
    out = gen.complete(["p1", "p2", "p3", "p4"], 1, ctx.sampling, stop=["</think>", "\n"], max_tokens=[10, 3, 10, 10])
    (c1,), (c2,), (c3,), (c4,) = out
    # "a", "b", "</think>" (one token in the tiny vocabulary): cut after the stop string, 3 tokens kept
    assert (c1.text, c1.tokens, c1.finish, c1.stop) == ("ab</think>", 3, "stop", "</think>")
    # this prompt's own cap (3) is below the batch's widest (10): its first 3 tokens only
    assert (c2.text, c2.tokens, c2.finish) == ("abc", 3, "length")
    # the model ended: 2 characters + the EOS token
    assert (c3.text, c3.tokens, c3.finish) == ("xy", 3, "eos")
    assert (c4.text, c4.tokens, c4.finish, c4.stop) == ("one\n", 4, "stop", "\n")
    assert gen.calls == 1  # one engine call for all four prompts


def test_caps_hold_on_a_real_model():
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=3)
    model.generation_config.eos_token_id = tok.eos_token_id
    gen = EngineGenerator(NativeEngine(model, tok, batch_size=16), tok)
    caps = [2, 5, 9]
    out = gen.complete(["1+1=", "2+2=", "3+3="], 2, SamplingParams(1.0, 1.0, 0, 64), max_tokens=caps)
    for cap, group in zip(caps, out):
        for c in group:
            assert c.tokens <= cap
            assert len(tok(c.text, add_special_tokens=False)["input_ids"]) <= cap
            assert c.finish in ("eos", "length") and (c.finish == "eos" or c.tokens == cap)
