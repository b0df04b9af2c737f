"""Process reward models: Math-Shepherd Monte-Carlo step labels (hand-computed), training a small PRM on them, the
LLM-judge step scorer (batched == one by one), and building a PRM from a method's parameters."""

from __future__ import annotations

import pytest
import torch

from r1lab.infer.prm import JudgePRM, TrainedPRM, build_prm, encode_steps, monte_carlo_labels, train_prm
from r1lab.types import Example

EX = [Example("e0", "5", prompt="2+3?")]


def solver(prompt: str, i: int) -> str:
    """Two solutions: 'step a / step b / 5' (right) and 'step c / 9' (wrong); rollouts from each step prefix."""
    if prompt.endswith("A:"):
        return ["step a\nstep b\n5", "step c\n9"][i]
    if prompt.endswith("step a\nstep b\n"):
        return ["5", "5"][i]
    if prompt.endswith("step a\n"):
        return ["so 5", "so 4"][i]
    if prompt.endswith("step c\n"):
        return ["7", "8"][i]
    raise AssertionError(prompt)


@pytest.mark.parametrize("mode, first, second", [("soft", [0.5, 1.0, 1.0], [0.0, 0.0]),
                                                 ("hard", [1.0, 1.0, 1.0], [0.0, 0.0])])
def test_monte_carlo_labels(scripted_ctx, mode, first, second):
    ctx, _ = scripted_ctx(solver)
    records = monte_carlo_labels(EX, ctx, solutions=2, rollouts=2, mode=mode)
    # step a: 1 of 2 rollouts reach 5; step b: 2 of 2; the last step is the solution's own correctness
    assert records[0] == {"question": "2+3?", "steps": ["step a", "step b", "5"], "labels": first, "correct": True}
    assert records[1] == {"question": "2+3?", "steps": ["step c", "9"], "labels": second, "correct": False}


def test_trained_prm_learns_step_labels(tiny_model_dir, tmp_path, scripted_ctx):
    records = [{"question": "q", "steps": ["good", "bad"], "labels": [1.0, 0.0]},
               {"question": "q", "steps": ["bad", "good"], "labels": [0.0, 1.0]}] * 4
    folder = train_prm(records, tiny_model_dir, tmp_path / "prm", epochs=15, lr=3e-3, batch_size=4)
    prm = build_prm({"kind": "trained", "model": str(folder)}, scripted_ctx(solver)[0])
    assert isinstance(prm, TrainedPRM)
    (good_bad, bad_good) = prm.score_steps(["q", "q"], [["good", "bad"], ["bad", "good"]])
    assert good_bad[0] > 0.8 and good_bad[1] < 0.2 and bad_good[0] < 0.2 and bad_good[1] > 0.8


def test_step_ends_are_the_last_token_of_each_step(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, ends = encode_steps(tok, "q?", ["ab", "c"])
    assert tok.decode(ids) == "q?\nab\nc\n" and ends == [5, 7]  # q ? \n a b \n c \n: each step ends on its newline


def test_judge_scores_each_prefix_the_same_batched_or_alone(tiny_model_dir):
    from r1lab.models.loading import load_model

    loaded = load_model(str(tiny_model_dir))
    judge = JudgePRM(loaded.model, loaded.tokenizer, batch_size=8)
    questions, steps = ["2+3?", "a much longer question: 20+30?"], [["2+3", "=5"], ["20+30=50"]]
    batched = judge.score_steps(questions, steps)
    assert [len(s) for s in batched] == [2, 1]
    alone = JudgePRM(loaded.model, loaded.tokenizer, batch_size=1)
    for q, s, scores in zip(questions, steps, batched):
        assert scores == pytest.approx(alone.score_steps([q], [s])[0], abs=1e-5)  # left padding changes nothing
    # By hand for one prefix: P(yes) / (P(yes) + P(no)) over the next-token distribution.
    ids = loaded.tokenizer(judge._prompt("2+3?", ["2+3"]), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        p = torch.softmax(loaded.model(ids).logits[0, -1].float(), -1)
    expected = float(p[judge.yes].sum() / (p[judge.yes].sum() + p[judge.no].sum()))
    assert batched[0][0] == pytest.approx(expected, abs=1e-5)


def test_prm_spec_errors(scripted_ctx):
    ctx, _ = scripted_ctx(solver)
    with pytest.raises(ValueError, match="unknown key"):
        build_prm({"kind": "judge", "modle": "x"}, ctx)
    with pytest.raises(ValueError, match="needs model"):
        build_prm({"kind": "trained"}, ctx)
    with pytest.raises(ValueError, match="allowed: judge, trained"):
        build_prm({"kind": "oracle", "model": "x"}, ctx)


def test_labelling_seeds_come_from_the_problem_not_the_batch(scripted_ctx):
    """Each problem's solutions and each (solution, step)'s rollouts get a seed of their own, the same whether the
    problem is labelled alone or with others (as on another rank): the labels then do not depend on the sharding."""
    def seeds_by_prompt(examples):
        ctx, engine = scripted_ctx(solver)
        seen = {}
        generate = engine.generate

        def recording(prompts, n, sampling, seeds=None):
            seen.update(zip(prompts, seeds))
            return generate(prompts, n, sampling, seeds)

        engine.generate = recording
        monte_carlo_labels(examples, ctx, solutions=2, rollouts=2)
        return seen

    other = Example("e1", "5", prompt="3+2?")
    together, alone = seeds_by_prompt([other, EX[0]]), seeds_by_prompt(EX)
    assert alone and all(together[p] == s for p, s in alone.items())
    assert len(set(together.values())) == len(together)  # 2 problems + their 3 step prefixes each: all distinct
