"""PRM-guided search over reasoning steps: step-level beam search and diverse verifier tree search (DVTS).

A step is the text up to ``delimiter``. Each round, every kept beam is continued ``expand`` times by one step,
the process reward model scores each candidate's steps, the per-step scores are aggregated (last / min / prod,
``r1lab.infer.prm``) and the ``width`` best unfinished candidates of each tree are kept; candidates that ended
(the model stopped) join the tree's finished pool. A tree stops when its pool holds ``width`` solutions, when
nothing is left to expand, or after ``max_steps`` rounds (its kept beams then count as finished).

- beam search (Snell et al. 2024, arXiv 2408.03314, section 5): one tree, ``beams`` kept, ``expand`` per beam;
- DVTS (Beeching, Tunstall, Rush 2024, "Scaling test-time compute with open models", Hugging Face): ``n / expand``
  independent trees of width 1, expanded greedily by the PRM, so the final candidates stay diverse.

The answer is the finished solution with the best aggregate score (``select: best``, ties to the first found)
or the answer with the highest summed score over finished solutions (``select: vote``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from r1lab.infer.base import METHODS, Answer, InferContext, declare, method_params
from r1lab.infer.prm import AGGREGATIONS, aggregate, build_prm

if TYPE_CHECKING:
    from r1lab.types import Example

SEARCH_DEFAULTS = dict(max_steps=6, step_tokens=48, delimiter="\n", aggregate="last", select="best", prm={},
                       instruction=None)


@dataclass
class Beam:
    text: str = ""  # the response so far
    steps: list[str] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0  # aggregate of step_scores
    finished: bool = False


def tree_search(examples: list["Example"], ctx: InferContext, prm, trees: int, width: int, expand: int,
                p: dict) -> list[Answer]:
    """Run ``trees`` independent searches of ``width`` beams per example, all problems and trees in lockstep."""
    if trees < 1 or width < 1 or expand < 1 or p["max_steps"] < 1 or p["step_tokens"] < 1:
        raise ValueError("tree search: trees, beams/width, expand, max_steps and step_tokens must be >= 1")
    if p["aggregate"] not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATIONS)}, got {p['aggregate']!r}")
    if p["select"] not in ("best", "vote"):
        raise ValueError(f"select must be 'best' or 'vote', got {p['select']!r}")
    prompts = [ctx.render(e, p["instruction"]) for e in examples]
    # active[(problem, tree)]: beams to expand; the root is `width` copies of the empty beam, so it gets width x expand
    active = {(i, t): [Beam() for _ in range(width)] for i in range(len(examples)) for t in range(trees)}
    finished: dict[tuple[int, int], list[Beam]] = {key: [] for key in active}
    tokens = [0] * len(examples)
    trace: list[list[list[tuple[str, float]]]] = [[] for _ in examples]  # per problem, per round: kept beams of tree 0
    for round_ in range(p["max_steps"]):
        nodes = [(key, beam) for key, beams in active.items() for beam in beams]
        if not nodes:
            break
        groups = ctx.generator.complete([prompts[key[0]] + beam.text for key, beam in nodes], expand, ctx.sampling,
                                        stop=[p["delimiter"]], max_tokens=[p["step_tokens"]] * len(nodes))
        candidates: dict[tuple[int, int], list[Beam]] = {key: [] for key in active}
        for (key, beam), group in zip(nodes, groups):
            for c in group:
                tokens[key[0]] += c.tokens
                step = c.text[: -len(c.stop)] if c.finish == "stop" else c.text
                steps = beam.steps + ([step.strip()] if step.strip() else [])
                # a step cut by step_tokens is still a step; only the model stopping ends a solution
                candidates[key].append(Beam(beam.text + c.text, steps, finished=c.finish == "eos"))
        scored = [(key, b) for key, cands in candidates.items() for b in cands if b.steps]  # no steps: score 0
        if scored:
            questions = [examples[key[0]].question for key, _ in scored]
            step_scores = prm.score_steps(questions, [b.steps for _, b in scored])
            for (_, beam), scores in zip(scored, step_scores):
                beam.step_scores, beam.score = list(scores), aggregate(scores, p["aggregate"])
        last_round = round_ == p["max_steps"] - 1
        for key, cands in candidates.items():
            ranked = sorted(range(len(cands)), key=lambda j: (-cands[j].score, j))  # ties: the earlier candidate
            done = [cands[j] for j in ranked if cands[j].finished]
            finished[key] += done
            room = width - len(finished[key])
            keep = [cands[j] for j in ranked if not cands[j].finished][: max(room, 0)]
            if last_round:
                finished[key] += keep
                keep = []
            active[key] = keep
            if key[1] == 0:
                trace[key[0]].append([(b.text, b.score) for b in keep + done])
        active = {key: beams for key, beams in active.items() if beams}
    return [_select(examples[i], ctx, [b for t in range(trees) for b in finished[(i, t)]], tokens[i], p, trace[i])
            for i in range(len(examples))]


def _select(example: "Example", ctx: InferContext, pool: list[Beam], tokens: int, p: dict, trace) -> Answer:
    info = {"trace": trace, "scores": [b.score for b in pool]}
    if not pool:
        return Answer(None, "", tokens, 0, info)
    answers = [ctx.answer_of(b.text) for b in pool]
    if p["select"] == "best":
        best = max(range(len(pool)), key=lambda j: (pool[j].score, -j))
        return Answer(answers[best], pool[best].text, tokens, len(pool), info)
    from r1lab.evals.answers import equivalence
    from r1lab.evals.metrics import cluster_answers

    clusters = cluster_answers(answers, equivalence(ctx.task, example))
    weight: dict[int, float] = {}
    for c, b in zip(clusters, pool):
        if c is not None:
            weight[c] = weight.get(c, 0.0) + b.score
    if not weight:
        return Answer(None, pool[0].text, tokens, len(pool), info)
    winner = max(weight, key=lambda c: (weight[c], -clusters.index(c)))
    first = clusters.index(winner)
    return Answer(answers[first], pool[first].text, tokens, len(pool), info)


@METHODS.register("beam_search")
@declare(beams=4, expand=2, **SEARCH_DEFAULTS)
def beam_search(examples: list["Example"], ctx: InferContext, params: dict) -> list[Answer]:
    """step-level beam search guided by a process reward model: keep the best `beams`, expand each `expand` times"""
    p = method_params("beam_search", params, beam_search.param_defaults)
    return tree_search(examples, ctx, build_prm(p["prm"], ctx), 1, int(p["beams"]), int(p["expand"]), p)


@METHODS.register("dvts")
@declare(n=8, expand=2, **SEARCH_DEFAULTS)
def dvts(examples: list["Example"], ctx: InferContext, params: dict) -> list[Answer]:
    """diverse verifier tree search: n/expand independent PRM-greedy subtrees (Beeching et al. 2024)"""
    p = method_params("dvts", params, dvts.param_defaults)
    n, expand = int(p["n"]), int(p["expand"])
    if n < expand or n % expand:
        raise ValueError(f"method 'dvts': n ({n}) must be a multiple of expand ({expand})")
    return tree_search(examples, ctx, build_prm(p["prm"], ctx), n // expand, 1, expand, p)
