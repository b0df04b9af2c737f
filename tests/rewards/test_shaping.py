"""r1lab.rewards.shaping: language consistency, cosine length scaling, DAPO soft overlong and n-gram repetition.

Lengths use the tiny character tokenizer, so a plain ASCII string of k characters is k tokens (each R1 tag such as
``<answer>`` is one token): every expected value below is computed by hand from that."""

from __future__ import annotations

import math

import pytest

from r1lab.models.tiny import tiny_tokenizer
from r1lab.rewards.combine import score_completion
from r1lab.rewards.functions import REWARDS, RewardContext
from r1lab.rewards.shaping import (
    chain_of_thought,
    cosine_interpolate,
    cosine_length,
    language_consistency,
    neutralise,
    repetition,
    reward_params,
    soft_overlong,
    words_with_scripts,
)
from r1lab.types import Example

EX = Example(id="e0", answer="5", prompt="What is 2+3?")


class ExactTask:
    def score(self, answer, example):
        return 1.0 if answer == example.answer else 0.0


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def ctx(params=None, tokenizer=None, max_new_tokens=None) -> RewardContext:
    return RewardContext(task=ExactTask(), params=params or {}, tokenizer=tokenizer, max_new_tokens=max_new_tokens)


def lang_ctx(**params) -> RewardContext:
    return ctx({"language_consistency": params})


# ---------------------------------------------------------------------------------------------------------------
# language_consistency: script detector (the default)
# ---------------------------------------------------------------------------------------------------------------
SCRIPT_CASES = [
    # (completion, params, expected, why)
    ("<think>First add the two numbers.</think><answer>5</answer>", {}, 1.0, "all English words"),
    ("<think>First add them 所以</think>", {}, 3 / 5, "3 English words + 2 Han characters (one word each)"),
    ("<think>所以答案</think>", {"language": "zh"}, 1.0, "Chinese target, Chinese text"),
    ("<think>所以 the answer</think>", {"language": "zh"}, 2 / 4, "2 Han characters + 2 English words"),
    ("<think>Итак ответ</think>", {}, 0.0, "Cyrillic words in an English chain of thought"),
    ("<think>Итак ответ is</think>", {"language": "ru"}, 2 / 3, "Russian target with one English word"),
    ("<think>これはテスト</think>", {"language": "ja"}, 1.0, "Japanese: kana and kanji are all target"),
    ("<think>これは test</think>", {"language": "ja"}, 3 / 4, "3 kana + 1 English word"),
    ("<think>café naïve déjà</think>", {}, 1.0, "accented Latin letters stay one Latin word each"),
    ("<think>so 2x + 3 = 7 and x = 2</think>", {}, 1.0, "math tokens and single-letter variables are neutral"),
    ("<think>call np.array(x) and my_list, then fooBar</think>", {}, 1.0, "identifiers are code, not words"),
    ("<think>use ```python\nprint('所以')\n``` here</think>", {}, 1.0, "a fenced code block is ignored entirely"),
    ("<think>angle $\\theta = 所以$ here</think>", {}, 1.0, "inline math is ignored, whatever it contains"),
    ("<think>\\frac{1}{2} of \\text{apples}</think>", {}, 1.0, "LaTeX commands dropped; \\text words count"),
    ("<think>θ is pi</think>", {}, 1.0, "a single Greek letter is a variable, not Greek"),
    ("<think>12 + 30 = 42</think>", {}, 1.0, "no words at all: no mixing, scores 1"),
    ("First add them 所以", {}, 3 / 5, "no think block: the whole completion is judged"),
    ("<think>the sum</think><answer>所以答案</answer>", {}, 1.0, "only the thinking is judged, not the answer"),
    ("<think>the sum 所以", {}, 2 / 4, "an unclosed think block runs to the end (truncated completion)"),
    ("<think>one two</think> x <think>三</think>", {}, 2 / 3, "several think blocks are judged together"),
]


@pytest.mark.parametrize("text, params, expected", [c[:3] for c in SCRIPT_CASES], ids=[c[3] for c in SCRIPT_CASES])
def test_language_consistency_script(text, params, expected):
    assert language_consistency(text, EX, lang_ctx(**params)) == pytest.approx(expected)
    assert REWARDS.get("language_consistency")(text, EX, lang_ctx(**params)) == pytest.approx(expected)


def test_script_detector_cannot_tell_latin_languages_apart():
    # The documented limitation of the default: French in an English chain of thought is the same script.
    assert language_consistency("<think>Je pense que la réponse est sept</think>", EX, lang_ctx()) == 1.0


def test_helpers_chain_of_thought_and_words():
    assert chain_of_thought("<think>a b</think><answer>c</answer>") == "a b"
    assert chain_of_thought("no tags") == "no tags"
    text = neutralise("see x_1 and 所以")
    assert len(text) == len("see x_1 and 所以")  # offsets preserved
    assert [(text[a:b], s) for a, b, s in words_with_scripts(text)] == [
        ("see", "LATIN"), ("and", "LATIN"), ("所", "HAN"), ("以", "HAN")]


# ---------------------------------------------------------------------------------------------------------------
# language_consistency: lingua detector (Latin-script languages told apart)
# ---------------------------------------------------------------------------------------------------------------
LINGUA_CASES = [
    # (chain of thought, target, expected, why)
    ("We need the total. Each box holds twelve apples, and there are three boxes.", "en", 1.0,
     "plain English stays 1.0"),
    ("First, I add the numbers. Dann prüfe ich das Ergebnis noch einmal. The answer is twelve.", "en", 8 / 15,
     "a German clause of 7 words foreign; 8 English words (the single letter I is skipped)"),
    ("Okay so the answer is five. Hmm, donc c'est bien cinq.", "en", 7 / 11,
     "French clause of 4 words (donc est bien cinq; c is a single letter) flagged; 'Hmm' is too short to judge"),
    ("Je pense que la réponse est sept, because three plus four is seven.", "fr", 7 / 13,
     "French target: the English clause (6 words) is foreign"),
    ("So 所以 we add them and get the sum.", "en", 8 / 10,
     "scripts still decide first: 2 Han characters are foreign, the English clause is English"),
]


@pytest.mark.parametrize("cot, language, expected", [c[:3] for c in LINGUA_CASES], ids=[c[3] for c in LINGUA_CASES])
def test_language_consistency_lingua(cot, language, expected):
    c = lang_ctx(language=language, detector="lingua")
    assert language_consistency(f"<think>{cot}</think>", EX, c) == pytest.approx(expected)


def test_lingua_candidates_param():
    cot = "<think>The sum is seven. Dann prüfe ich das Ergebnis noch einmal.</think>"
    # en and de: the German clause (7 words) is told apart from the English one (4 words)
    assert language_consistency(cot, EX, lang_ctx(detector="lingua", candidates=["en", "de"])) == pytest.approx(4 / 11)
    # only the target itself as candidate: nothing to tell apart, the script test alone decides
    assert language_consistency(cot, EX, lang_ctx(detector="lingua", candidates=["en"])) == 1.0
    with pytest.raises(ValueError, match="lingua does not know the language 'xx'"):
        language_consistency(cot, EX, lang_ctx(detector="lingua", candidates=["xx"]))


@pytest.mark.parametrize("params, message", [
    ({"language": "xx"}, "unknown language 'xx'"),  # not an ISO code we know
    ({"detector": "magic"}, "detector must be"),  # typo in the detector name
    ({"lang": "en"}, "unknown parameter(s) lang"),  # typo in the key: named, with the allowed keys
])
def test_language_consistency_bad_params(params, message):
    with pytest.raises(ValueError, match=r"language_consistency") as err:
        language_consistency("<think>a</think>", EX, lang_ctx(**params))
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# cosine_length
# ---------------------------------------------------------------------------------------------------------------
def test_cosine_interpolate_hand_values():
    # CosFn endpoints and midpoint: cos(0)=1 -> at_zero; cos(pi)=-1 -> at_max; cos(pi/2)=0 -> the mean.
    assert cosine_interpolate(0, 100, 2.0, 1.0) == pytest.approx(2.0)
    assert cosine_interpolate(100, 100, 2.0, 1.0) == pytest.approx(1.0)
    assert cosine_interpolate(50, 100, 2.0, 1.0) == pytest.approx(1.5)
    # t = 25: 1 + 0.5 * (2 - 1) * (1 + cos(pi/4)) = 1 + 0.5 * 1.70711 = 1.85355
    assert cosine_interpolate(25, 100, 2.0, 1.0) == pytest.approx(1.853553, abs=1e-6)


COSINE_PARAMS = {"r_c0": 2.0, "r_cL": 1.0, "r_w0": -10.0, "r_wL": 0.0, "r_exceed": -5.0}
COSINE_CASES = [
    # (completion, max_length, expected, why) -- length = number of characters, tags 1 token each
    ("<answer>5</answer>", 12, 1.0 + 0.5 * (2.0 - 1.0) * (1 + math.cos(math.pi / 4)),
     "correct, 3 tokens of 12: r_cL + 0.5*(r_c0-r_cL)*(1+cos(pi*3/12)) = 1.8536"),
    ("<answer>6</answer>", 12, 0.0 + 0.5 * (-10.0 - 0.0) * (1 + math.cos(math.pi / 4)),
     "wrong, 3 tokens of 12: r_wL + 0.5*(r_w0-r_wL)*(1+cos(pi/4)) = -8.5355"),
    ("abcdef<answer>5</answer>", 18, 1.5, "correct at exactly half of max_length: the mean of r_c0 and r_cL"),
    ("abcdef<answer>6</answer>", 18, -5.0, "wrong at half: the mean of r_w0 and r_wL"),
    ("x" * 9 + "<answer>5</answer>", 12, -5.0, "12 tokens = max_length: truncated, r_exceed even if correct"),
    ("", 12, -10.0, "empty completion: wrong at length 0 gets r_w0"),
]


@pytest.mark.parametrize("text, max_length, expected", [c[:3] for c in COSINE_CASES], ids=[c[3] for c in COSINE_CASES])
def test_cosine_length(tok, text, max_length, expected):
    c = ctx({"cosine_length": COSINE_PARAMS}, tokenizer=tok, max_new_tokens=max_length)
    assert cosine_length(text, EX, c) == pytest.approx(expected)
    # the same through params.max_length instead of the rollout limit
    c = ctx({"cosine_length": {**COSINE_PARAMS, "max_length": max_length}}, tokenizer=tok, max_new_tokens=999)
    assert cosine_length(text, EX, c) == pytest.approx(expected)


def test_cosine_length_prefers_short_correct_and_long_wrong(tok):
    c = ctx(tokenizer=tok, max_new_tokens=100)  # default r_c0=1, r_cL=0.5, r_w0=-1, r_wL=-0.5
    short_right, long_right = cosine_length("<answer>5</answer>", EX, c), cosine_length("a" * 60 + "<answer>5</answer>", EX, c)
    short_wrong, long_wrong = cosine_length("<answer>6</answer>", EX, c), cosine_length("a" * 60 + "<answer>6</answer>", EX, c)
    assert 1.0 >= short_right > long_right >= 0.5
    assert -1.0 <= short_wrong < long_wrong <= -0.5


def test_cosine_length_threshold_for_partial_credit(tok):
    class HalfTask:
        def score(self, answer, example):
            return 0.5

    c = RewardContext(task=HalfTask(), tokenizer=tok, max_new_tokens=6, params={"cosine_length": {"threshold": 0.5}})
    # 3 tokens of 6: correct (0.5 >= 0.5) -> midpoint of 1.0 and 0.5
    assert cosine_length("<answer>5</answer>", EX, c) == pytest.approx(0.75)
    c.params["cosine_length"]["threshold"] = 0.9  # now 0.5 is wrong -> midpoint of -1.0 and -0.5
    assert cosine_length("<answer>5</answer>", EX, c) == pytest.approx(-0.75)


def test_cosine_length_needs_tokenizer_and_max_length(tok):
    with pytest.raises(ValueError, match="needs RewardContext.tokenizer"):
        cosine_length("<answer>5</answer>", EX, ctx(max_new_tokens=10))
    with pytest.raises(ValueError, match="set rewards.params.cosine_length.max_length"):
        cosine_length("<answer>5</answer>", EX, ctx(tokenizer=tok))


# ---------------------------------------------------------------------------------------------------------------
# soft_overlong (DAPO eq. 13)
# ---------------------------------------------------------------------------------------------------------------
OVERLONG_CASES = [
    # (length in tokens, max_length, cache_length, expected, why)
    (10, 100, 20, 0.0, "well inside the budget"),
    (80, 100, 20, 0.0, "exactly at L_max - L_cache: still free"),
    (90, 100, 20, -0.5, "half way through the cache: (80 - 90) / 20"),
    (95, 100, 20, -0.75, "three quarters: (80 - 95) / 20"),
    (100, 100, 20, -1.0, "at L_max: -1"),
    (130, 100, 20, -1.0, "beyond L_max (max_length below the rollout limit): -1"),
    (90, 100, None, -0.5, "default cache is max_length // 5 = 20"),
    (5, 10, 10, -0.5, "cache = whole budget: a linear ramp from 0 tokens"),
]


@pytest.mark.parametrize("length, max_length, cache, expected", [c[:4] for c in OVERLONG_CASES],
                         ids=[c[4] for c in OVERLONG_CASES])
def test_soft_overlong(tok, length, max_length, cache, expected):
    params = {"soft_overlong": {"max_length": max_length, "cache_length": cache}}
    assert soft_overlong("a" * length, EX, ctx(params, tokenizer=tok)) == pytest.approx(expected)


def test_soft_overlong_defaults_to_rollout_limit(tok):
    # max_new_tokens=10 -> cache 2, free up to 8: 9 tokens -> (8 - 9) / 2
    assert soft_overlong("a" * 9, EX, ctx(tokenizer=tok, max_new_tokens=10)) == pytest.approx(-0.5)


@pytest.mark.parametrize("cache", [0, 101, 2.5])  # empty ramp, longer than the budget, not an integer
def test_soft_overlong_rejects_bad_cache(tok, cache):
    with pytest.raises(ValueError, match="cache_length"):
        soft_overlong("a", EX, ctx({"soft_overlong": {"max_length": 100, "cache_length": cache}}, tokenizer=tok))


# ---------------------------------------------------------------------------------------------------------------
# repetition
# ---------------------------------------------------------------------------------------------------------------
REPETITION_CASES = [
    # (completion, params, expected, why)
    ("the cat sat on the mat", {"ngram_size": 2}, 0.0, "5 distinct bigrams: no repetition"),
    ("a b a b a b", {"ngram_size": 2}, -(1 - 2 / 5), "bigrams ab ba ab ba ab: 2 distinct of 5"),
    ("wait wait wait wait", {"ngram_size": 1, "max_penalty": -0.5}, -0.5 * (1 - 1 / 4), "1 distinct word of 4"),
    ("Wait WAIT wait", {"ngram_size": 1}, -(1 - 1 / 3), "case-folded before comparing"),
    ("one two", {"ngram_size": 3}, 0.0, "shorter than one n-gram: no penalty"),
    ("", {}, 0.0, "empty completion"),
    ("x y z x y z x y z", {}, -(1 - 3 / 7), "default trigrams: xyz yzx zxy xyz yzx zxy xyz -> 3 distinct of 7"),
]


@pytest.mark.parametrize("text, params, expected", [c[:3] for c in REPETITION_CASES], ids=[c[3] for c in REPETITION_CASES])
def test_repetition(text, params, expected):
    assert repetition(text, EX, ctx({"repetition": params})) == pytest.approx(expected)


@pytest.mark.parametrize("params, message", [
    ({"max_penalty": 0.5}, "must be <= 0"),  # a positive "penalty" would reward loops
    ({"ngram_size": 0}, "positive integer"),  # no n-grams at all
])
def test_repetition_bad_params(params, message):
    with pytest.raises(ValueError, match=message):
        repetition("a b c", EX, ctx({"repetition": params}))


# ---------------------------------------------------------------------------------------------------------------
# composition through the combiner, and parameter checking
# ---------------------------------------------------------------------------------------------------------------
def test_shaping_rewards_compose_with_weights(tok):
    # accuracy 1 * 1.0 + language 1 * 0.5 + repetition 0 * 1.0 + soft_overlong 0 (13 tokens, free up to 80)
    text = "<think>add them</think><answer>5</answer>"
    c = ctx(tokenizer=tok, max_new_tokens=100)
    weights = {"accuracy": 1.0, "language_consistency": 0.5, "repetition": 1.0, "soft_overlong": 2.0}
    res = score_completion(text, EX, weights, c)
    assert res.valid
    assert res.breakdown == {"accuracy": 1.0, "language_consistency": 1.0, "repetition": 0.0, "soft_overlong": 0.0}
    assert res.total == pytest.approx(1.5)


def test_bad_param_makes_sample_invalid_not_zero(tok):
    res = score_completion("a b", EX, {"repetition": 1.0}, ctx({"repetition": {"n": 2}}))
    assert not res.valid and "unknown parameter(s) n" in res.error and "allowed: max_penalty, ngram_size" in res.error


def test_reward_params_and_declared_defaults():
    assert reward_params(ctx({"repetition": {"ngram_size": 4}}), "repetition", {"ngram_size": 3, "max_penalty": -1.0}) == {
        "ngram_size": 4, "max_penalty": -1.0}
    # each shaping reward declares what it accepts (for early config validation)
    for name in ("language_consistency", "cosine_length", "soft_overlong", "repetition"):
        assert isinstance(REWARDS.get(name).param_defaults, dict)


def test_configured_from_the_command_line_overrides(tok):
    # The path a user takes: --set weights and per-reward params, validated, then scored through the combiner.
    from r1lab.config import load_config
    from r1lab.config import GRPOConfig

    cfg = load_config(GRPOConfig, overrides=[
        "rewards.weights={language_consistency: 1.0, soft_overlong: 1.0}",
        "rewards.params.language_consistency.language=zh",
        "rewards.params.soft_overlong={max_length: 12, cache_length: 4}",
    ])
    c = RewardContext(task=ExactTask(), params=cfg.rewards.params, tokenizer=tok)
    # 4 Han characters of 6 words -> 4/6; 11 characters = 11 tokens (each Han character is one unknown token of the
    # char tokenizer), free up to 12 - 4 = 8: (8 - 11) / 4 = -0.75
    res = score_completion("所以 is 答案 ok", EX, cfg.rewards.weights, c)
    assert res.breakdown == {"language_consistency": pytest.approx(4 / 6), "soft_overlong": pytest.approx(-0.75)}


def test_length_rewards_use_the_rollouts_token_counts_when_given(tok):
    # The same short text scored with the generated lengths the trainer passes: 90 and 100 tokens generated (the
    # decoded text is shorter, e.g. special tokens stripped) -> DAPO ramp (80 - 90) / 20 and -1; without lengths
    # the re-tokenised 3 tokens would score 0.
    from r1lab.rewards import score_batch

    c = ctx({"soft_overlong": {"max_length": 100, "cache_length": 20}}, tokenizer=tok)
    results = score_batch(["aaa", "aaa"], [EX, EX], {"soft_overlong": 1.0}, c, token_lengths=[90, 100])
    assert [r.total for r in results] == pytest.approx([-0.5, -1.0])
    assert score_batch(["aaa"], [EX], {"soft_overlong": 1.0}, c)[0].total == 0.0
    with pytest.raises(ValueError, match="1 token lengths but 2 completions"):
        score_batch(["a", "b"], [EX, EX], {"soft_overlong": 1.0}, c, token_lengths=[3])
