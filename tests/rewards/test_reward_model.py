"""r1lab.rewards.reward_model: a tiny random LlamaForSequenceClassification saved to a folder scores
(question, completion) exactly like a direct forward pass, whatever the padding side and batch size."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.rewards.combine import score_batch
from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.rewards.reward_model import encode_pair, load_reward_model, reward_model, score_encodings, sigmoid
from r1lab.types import Example

EXAMPLES = [
    Example(id="e0", answer="5", prompt="What is 2+3?"),
    Example(id="e1", answer="7", prompt="What is 3+4? Think it through before you answer."),
    Example(id="e2", answer="9", messages=[{"role": "user", "content": "And 4+5?"}]),
    Example(id="e3", answer="1", prompt="1?"),
]
COMPLETIONS = [
    "<think>2+3=5</think><answer>5</answer>",
    "<think>3 plus 4 is 7, let me double check: 4+3=7.</think><answer>7</answer>",
    "9",
    "<think>hmm</think> I am not sure, maybe it is one, or two, or something else entirely.",
]


def save_tiny_reward_model(folder, chat_template: bool = True, num_labels: int = 1):
    """A 2-layer random Llama with a classification head, the char tokenizer, and a pad id distinct from EOS."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from r1lab.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.pad_token = "<pad>"  # pad != eos, so the head pools the true last token
    if not chat_template:
        tok.chat_template = None
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         num_labels=num_labels, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():  # a random head is ~0 everywhere; scale it up so distinct texts get clearly distinct logits
        model.score.weight.mul_(50.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return save_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"))


def ctx(folder, **params) -> RewardContext:
    return RewardContext(task=None, params={"reward_model": {"model": str(folder), **params}})


def direct_logits(folder, texts_or_pairs) -> list[float]:
    """The oracle: one unpadded forward per sequence, straight through transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    for item in texts_or_pairs:
        enc = tok(*item, return_tensors="pt") if isinstance(item, tuple) else tok(item, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out.append(float(model(**enc).logits[0, 0]))
    return out


def chat_text(example: Example, completion: str) -> str:
    # The char tokenizer's chat template, written out by hand.
    return f"<|im_start|>user\n{example.question}<|im_end|>\n<|im_start|>assistant\n{completion}<|im_end|>\n"


def test_reward_equals_direct_logit_of_chat_text(rm_dir):
    expected = direct_logits(rm_dir, [chat_text(ex, c) for ex, c in zip(EXAMPLES, COMPLETIONS)])
    scores = reward_model(COMPLETIONS, EXAMPLES, ctx(rm_dir, batch_size=4))
    assert scores == pytest.approx(expected, abs=1e-4)
    assert len({round(s, 3) for s in scores}) == 4  # distinct texts, distinct scores: the test can tell them apart


def test_bfloat16_scores_follow_float32_within_bf16_precision(rm_dir):
    exact = reward_model(COMPLETIONS, EXAMPLES, ctx(rm_dir))
    fast = reward_model(COMPLETIONS, EXAMPLES, ctx(rm_dir, dtype="bfloat16"))
    model, _ = load_reward_model(str(rm_dir), "cpu", "bfloat16")
    assert model.dtype == torch.bfloat16
    # bf16 keeps 8 mantissa bits: ~0.4% per op; the tiny model's logits are O(1-10), so a few percent of their scale
    scale = max(abs(x) for x in exact)
    assert fast == pytest.approx(exact, abs=0.05 * scale)
    assert fast != exact  # it really ran in bf16
    assert sorted(range(4), key=lambda i: fast[i]) == sorted(range(4), key=lambda i: exact[i])  # same ranking


def test_sigmoid_normalisation(rm_dir):
    raw = reward_model(COMPLETIONS, EXAMPLES, ctx(rm_dir))
    squashed = reward_model(COMPLETIONS, EXAMPLES, ctx(rm_dir, normalize="sigmoid"))
    assert squashed == pytest.approx([1 / (1 + math.exp(-r)) for r in raw], abs=1e-6)
    assert all(0 < s < 1 for s in squashed)


@pytest.mark.parametrize("x, expected", [
    (0.0, 0.5),  # the midpoint
    (2.0, 1 / (1 + math.exp(-2.0))),  # ordinary positive value
    (-2.0, 1 / (1 + math.exp(2.0))),  # ordinary negative value
    (-1000.0, 0.0),  # would overflow exp(1000) in the naive formula
    (1000.0, 1.0),
])
def test_sigmoid_is_stable(x, expected):
    assert sigmoid(x) == pytest.approx(expected, abs=1e-12)


BATCHING_CASES = [
    # (batch size, padding side, why)
    (1, "right", "one sequence per forward: no padding at all"),
    (4, "right", "all four in one batch, right-padded"),
    (4, "left", "all four in one batch, left-padded with positions from the mask"),
    (3, "left", "uneven chunks (3 + 1), left-padded"),
]


@pytest.mark.parametrize("batch_size, side", [c[:2] for c in BATCHING_CASES], ids=[c[2] for c in BATCHING_CASES])
def test_padding_and_batching_do_not_change_scores(rm_dir, batch_size, side):
    model, tok = load_reward_model(str(rm_dir))
    encodings = [encode_pair(tok, ex.question, c) for ex, c in zip(EXAMPLES, COMPLETIONS)]
    assert len({len(e["input_ids"]) for e in encodings}) == 4  # different lengths, so padding really happens
    reference = score_encodings(model, tok, encodings, batch_size=1)[:, 0]
    scores = score_encodings(model, tok, encodings, batch_size=batch_size, padding_side=side)[:, 0]
    torch.testing.assert_close(scores, reference, atol=1e-4, rtol=1e-4)
    assert tok.padding_side == "right"  # restored after scoring


def test_text_pair_encoding_without_chat_template(tmp_path):
    folder = save_tiny_reward_model(tmp_path / "rm-pair", chat_template=False)
    expected = direct_logits(folder, [(ex.question, c) for ex, c in zip(EXAMPLES[:2], COMPLETIONS[:2])])
    assert reward_model(COMPLETIONS[:2], EXAMPLES[:2], ctx(folder)) == pytest.approx(expected, abs=1e-4)


def test_label_selects_a_head_output(tmp_path):
    folder = save_tiny_reward_model(tmp_path / "rm-2", num_labels=2)
    model, tok = load_reward_model(str(folder))
    logits = score_encodings(model, tok, [encode_pair(tok, EXAMPLES[0].question, COMPLETIONS[0])], batch_size=1)[0]
    assert reward_model(COMPLETIONS[:1], EXAMPLES[:1], ctx(folder, label=1)) == [pytest.approx(float(logits[1]), abs=1e-5)]
    with pytest.raises(ValueError, match="label 2 out of range"):
        reward_model(COMPLETIONS[:1], EXAMPLES[:1], ctx(folder, label=2))


def test_overlong_pair_fails_only_its_sample(rm_dir):
    # max_position_embeddings is 256: a 300-character completion cannot be scored, the short one can.
    results = score_batch([COMPLETIONS[0], "x" * 300], EXAMPLES[:2], {"reward_model": 1.0}, ctx(rm_dir))
    assert results[0].valid
    assert not results[1].valid and "exceed the reward model's 256 positions" in results[1].error


@pytest.mark.parametrize("params, message", [
    ({"normalize": "softmax"}, "normalize must be one of"),  # unknown normaliser
    ({"model": None}, "set rewards.params.reward_model.model"),  # no model
    ({"batchsize": 2}, "unknown parameter(s) batchsize"),  # typo in a key
    ({"dtype": "int8"}, "dtype must be one of float32, bfloat16, float16"),  # not a float dtype
])
def test_reward_model_bad_params(rm_dir, params, message):
    with pytest.raises(ValueError, match="reward_model") as err:
        reward_model(COMPLETIONS[:1], EXAMPLES[:1], ctx(rm_dir, **params))
    assert message in str(err.value)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        reward_model(COMPLETIONS[:1], EXAMPLES[:1], ctx("no-such-org/no-such-reward-model"))


def test_registered_as_batched(rm_dir):
    assert REWARDS.get("reward_model") is reward_model and is_batched(reward_model)
    # weighted with another reward through the combiner: total = 0.5 * logit + 1 * tag_count
    res = score_batch(COMPLETIONS[:1], EXAMPLES[:1], {"reward_model": 0.5, "tag_count": 1.0}, ctx(rm_dir))[0]
    assert res.total == pytest.approx(0.5 * res.breakdown["reward_model"] + 1.0)
