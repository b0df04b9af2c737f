"""CoT vs direct prompting, self-consistency (votes over verifier-equal answers, tie-break), best-of-N with the
oracle or a reward function, reward-weighted voting, and `r1lab eval --method` on top of them."""

from __future__ import annotations

import json
import re

import pytest

from r1lab.infer import METHODS
from r1lab.types import Example

EX = [Example("e0", "5", prompt="2+3?"), Example("e1", "7", prompt="3+4?")]


def test_cot_and_direct_differ_only_in_the_instruction(scripted_ctx):
    ctx, engine = scripted_ctx(lambda prompt, i: "so it is 5")
    cot = METHODS.get("cot")(EX[:1], ctx, {})
    direct = METHODS.get("direct")(EX[:1], ctx, {"instruction": "Just the number."})
    assert "[Let's think step by step, then give the final answer.]" in engine.prompts[0]
    assert "[Just the number.]" in engine.prompts[1]
    assert cot[0].answer == direct[0].answer == "5"
    assert cot[0].tokens == len("so it is 5") + 1  # characters + EOS


VOTE_CASES = [
    (["5", "6", "6", "5"], "5", "2-2 tie: the answer voted for first wins"),
    (["6", "5", "5.0", "6"], "6", "5 and 5.0 are one answer to the numeric verifier: 2-2, 6 came first"),
    (["x", "5", "5.00", "6"], "5", "5 and 5.00 outvote 6; 'x' has no number and abstains"),
    (["no", "none", "nothing", "nil"], None, "nobody answered"),
]


@pytest.mark.parametrize("replies, winner", [c[:2] for c in VOTE_CASES], ids=[c[2] for c in VOTE_CASES])
def test_self_consistency_votes(scripted_ctx, replies, winner):
    ctx, _ = scripted_ctx(lambda prompt, i: replies[i])
    (a,) = METHODS.get("self_consistency")(EX[:1], ctx, {"n": 4})
    assert a.answer == winner
    assert a.candidates == 4 and a.tokens == sum(len(r) + 1 for r in replies)


def test_best_of_n_with_the_oracle_and_with_a_reward(scripted_ctx):
    replies = ["4", "<think>x</think><answer>6</answer>", "5", "5"]
    ctx, _ = scripted_ctx(lambda prompt, i: replies[i])
    (oracle,) = METHODS.get("best_of_n")(EX[:1], ctx, {"n": 4})
    assert oracle.answer == "5" and oracle.info["chosen"] == 2  # the first correct sample (ties: earliest)
    assert oracle.info["scores"] == [0.0, 0.0, 1.0, 1.0]
    (fmt,) = METHODS.get("best_of_n")(EX[:1], ctx, {"n": 4, "scorer": "format"})
    assert fmt.answer == "6" and fmt.info["chosen"] == 1  # the only sample in R1 format
    with pytest.raises(ValueError, match="scorer 'nope'"):
        METHODS.get("best_of_n")(EX[:1], ctx, {"n": 4, "scorer": "nope"})
    with pytest.raises(ValueError, match="unknown parameter.*allowed: instruction, n, reward_params, scorer"):
        METHODS.get("best_of_n")(EX[:1], ctx, {"m": 2})


def test_weighted_vote_lets_reward_outweigh_numbers(scripted_ctx):
    # two plain "6" votes (tag_count 0) against one "5" with all four tags (tag_count 1)
    replies = ["6", "<think>a</think><answer>5</answer>", "6.0"]
    ctx, _ = scripted_ctx(lambda prompt, i: replies[i])
    (a,) = METHODS.get("weighted_vote")(EX[:1], ctx, {"n": 3, "scorer": "tag_count"})
    assert a.answer == "5" and a.info["weights"] == {"6": 0.0, "5": 1.0}
    (b,) = METHODS.get("self_consistency")(EX[:1], ctx, {"n": 3})
    assert b.answer == "6"  # unweighted, the majority wins


def test_eval_with_a_method_writes_accuracy_and_tokens(tmp_path, tiny_model_dir, scripted_engine):
    from r1lab.config import load_config
    from r1lab.evals.config import EvalJobConfig
    from r1lab.evals.runner import run_eval

    def reply(prompt: str, i: int) -> str:
        a, b = re.findall(r"Calculate (\d+) \+ (\d+)", prompt)[-1]
        return str(int(a) + int(b) + (i == 2))  # two right votes, one wrong

    cfg = load_config(EvalJobConfig, None, [
        f"model.name={tiny_model_dir}", f"log.output_dir={tmp_path / 'run'}", "log.progress=false",
        "task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
        "allow_parentheses: false, allow_negation: false}", "task.train_size=50", "task.eval_size=4", "task.seed=1",
        "method.name=self_consistency", "method.params={n: 3}"])
    result = run_eval(cfg, engine_factory=lambda: scripted_engine(reply))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["method"] == "self_consistency" and results["method_params"] == {"n": 3, "instruction": None}
    m = results["metrics"]
    assert m["accuracy"] == 1.0 and m["mean_candidates"] == 3.0 and m["extract_rate"] == 1.0
    # sums 7, 8, 6, 15: replies of 1+1 characters (EOS) each, except "16" for 15 -> 3 tokens
    assert m["mean_tokens"] == pytest.approx((3 * 3 * 2 + (3 + 3 + 3)) / 4)
    assert m["tokens_per_correct"] == pytest.approx(m["mean_tokens"])
    records = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert records[0]["info"]["votes"] == {"7": 2, "8": 1}
    assert result.results["metrics"] == m and (tmp_path / "run" / "report.md").is_file()


def test_method_runs_replay_from_the_cache(tmp_path, tiny_model_dir, scripted_engine):
    """A second identical `--method` run replays every generate call from the cache without building an engine; a
    changed parameter regenerates (its calls differ)."""
    from r1lab.config import load_config
    from r1lab.evals.config import EvalJobConfig
    from r1lab.evals.runner import run_eval

    built = []

    def factory():
        built.append(1)
        return scripted_engine(lambda prompt, i: str(i))

    def run(name: str, n: int):
        cfg = load_config(EvalJobConfig, None, [
            f"model.name={tiny_model_dir}", f"log.output_dir={tmp_path / name}", "log.progress=false",
            f"log.cache_dir={tmp_path / 'cache'}", "task.params={min_terms: 2, max_terms: 2, min_digits: 1, "
            "max_digits: 1, operators: ['+'], allow_parentheses: false, allow_negation: false}",
            "task.train_size=50", "task.eval_size=4", "method.name=self_consistency", f"method.params={{n: {n}}}"])
        return run_eval(cfg, engine_factory=factory).results

    first = run("a", 3)
    assert first["generate_calls"] >= 1 and first["replayed_calls"] == 0 and len(built) == 1
    second = run("b", 3)
    assert second["generate_calls"] == 0 and second["replayed_calls"] == first["generate_calls"]
    assert len(built) == 1  # the model was never needed
    assert second["metrics"] == first["metrics"]
    third = run("c", 2)
    assert third["generate_calls"] >= 1 and len(built) == 2
