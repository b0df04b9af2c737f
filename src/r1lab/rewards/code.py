"""The code reward: extract a Python program from a completion, run it against the problem's tests in the
sandbox, and grade it in the tiers of the R1 illustrated explainer (not code / code but not Python / Python that
fails the tests / correct), with an optional bonus for beating the reference solution's time.

Which text is the program (``extract_code``), first match wins:
1. the last fenced block (```python, ```py, or a bare ```); a block cut off by the length limit counts;
   a block in another language is still "code" (it lands in the not-Python tier);
2. else the last ``<answer>`` block, when it compiles to more than a bare expression or has code-shaped lines;
3. else the whole completion, when it compiles to more than a bare expression (so "42" or "yes" is not code).

The program that runs is the problem's ``setup`` (e.g. HumanEval's prompt: imports, helpers, the stub) followed
by the extracted code, so the model may restate the whole function; a bare indented body continues the stub
(HumanEval's completion convention). Problems carry their tests in ``Example.meta`` (see r1lab/tasks/code.py).

Imports stay light: the sandbox is imported on first use, so registering this reward costs nothing.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, fields
from typing import Any

from r1lab.rewards.extract import from_answer_tag
from r1lab.rewards.functions import REWARDS, RewardContext, batched
from r1lab.types import Example

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
SANDBOX_KINDS = ("warm", "cold")
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import |return\b|for .+:|while .+:|if .+:|elif .+:|else:|try:|except\b|"
    r"with .+:|print\(|@\w)",
    re.MULTILINE,
)


def extract_code(text: str) -> str | None:
    """The program in ``text`` by the rules in the module docstring, or None when there is no code."""
    blocks = _FENCE.findall(text)
    if blocks:
        python = [body for tag, body in blocks if tag.lower() in _PYTHON_TAGS]
        return (python or [body for _, body in blocks])[-1]
    answer = from_answer_tag(text)
    if answer is not None and (_is_program(answer) or _CODE_LINE.search(answer)):
        return answer
    return text if _is_program(text) else None


def _is_program(text: str) -> bool:
    """Compiles, and holds at least one statement that is not a bare expression."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(not isinstance(node, ast.Expr) for node in tree.body)


def compiles(source: str) -> bool:
    """``compile`` catches more than ``ast.parse`` (``return`` outside a function, bad ``nonlocal``, ...)."""
    try:
        compile(source, "<solution>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def build_program(code: str, example: Example) -> str | None:
    """The setup followed by the code, or the code continuing the setup's stub; None when neither compiles."""
    setup = str(example.meta.get("setup") or "")
    if not setup:
        return code if compiles(code) else None
    joined = setup.rstrip("\n") + "\n\n" + code
    if compiles(joined):
        return joined
    continued = setup + code  # HumanEval completion style: the code is the body of the stub in the setup
    return continued if code[:1] in (" ", "\t") and compiles(continued) else None


def problem_of(example: Example) -> tuple[str, str | None, str]:
    """(tests, entry_point, setup) of a code problem; raises when the example carries no tests."""
    tests = example.meta.get("tests")
    if not isinstance(tests, str) or not tests.strip():
        raise ValueError(f"example {example.id} has no code tests (meta['tests']); is this a code task?")
    return tests, example.meta.get("entry_point"), str(example.meta.get("setup") or "")


@dataclass(frozen=True)
class CodeRewardParams:
    """``rewards.params.code``. Tiers: not code -> 0; does not compile -> ``syntax_error``; compiles but fails
    -> ``compiles`` (+ the share of tests passed times ``1 - compiles`` with ``partial_credit``); all pass -> 1
    (+ up to ``speed_bonus`` for running faster than the reference, so the maximum is ``1 + speed_bonus``)."""

    syntax_error: float = 0.1  # "code, but not Python"
    compiles: float = 0.2  # Python that fails its tests (a crash while loading included)
    partial_credit: bool = True  # failing programs also earn their share of passed tests
    speed_bonus: float = 0.0  # off by default: timings on a shared machine are noisy
    time_limit: float = 5.0  # seconds of wall time per program and its tests
    memory_mb: int = 512
    workers: int = 0  # sandboxes at once; 0 = one per core
    # warm: resident sandboxes, each program in a fresh fork inside one (r1lab.sandbox.warm); cold: a new sandbox
    # per program (about 80 ms more each)
    sandbox: str = "warm"

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> CodeRewardParams:
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"reward 'code': unknown parameter {unknown[0]!r}; allowed: {', '.join(allowed)}")
        out = cls(**params)
        for name in ("syntax_error", "compiles"):
            value = getattr(out, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"reward 'code': parameter {name!r} must be a number in [0, 1], got {value!r}")
        if not isinstance(out.partial_credit, bool):
            raise ValueError(
                f"reward 'code': parameter 'partial_credit' must be true or false, got {out.partial_credit!r}")
        if isinstance(out.speed_bonus, bool) or not isinstance(out.speed_bonus, (int, float)) or out.speed_bonus < 0:
            raise ValueError(f"reward 'code': parameter 'speed_bonus' must be a number >= 0, got {out.speed_bonus!r}")
        if isinstance(out.workers, bool) or not isinstance(out.workers, int) or out.workers < 0:
            raise ValueError(f"reward 'code': parameter 'workers' must be an integer >= 0, got {out.workers!r}")
        if out.sandbox not in SANDBOX_KINDS:
            raise ValueError(f"reward 'code': parameter 'sandbox' must be one of: {', '.join(SANDBOX_KINDS)}; "
                             f"got {out.sandbox!r}")
        try:
            out.limits()
        except ValueError as err:
            raise ValueError(f"reward 'code': {err}") from None
        return out

    def limits(self):
        from r1lab.sandbox import SandboxLimits  # lazy: see the module docstring

        return SandboxLimits(time_limit=self.time_limit, memory_mb=self.memory_mb)


def grade(result, params: CodeRewardParams, reference_s: float | None = None) -> float:
    """The reward of a program that compiled, from its ``ExecutionResult``."""
    if not result.all_passed:
        share = result.fraction if params.partial_credit else 0.0
        return params.compiles + (1.0 - params.compiles) * share
    if params.speed_bonus and reference_s is not None:
        # Full bonus at twice the reference's speed or better, none at its speed or slower.
        speedup = reference_s / max(result.duration_s, 1e-9)
        return 1.0 + params.speed_bonus * min(max(speedup - 1.0, 0.0), 1.0)
    return 1.0


@REWARDS.register("code")
@batched
def code_reward(completions: list[str], examples: list[Example], ctx: RewardContext) -> list[float | BaseException]:
    """Tiered code reward; all programs of the batch run at once on a sandbox pool."""
    params = CodeRewardParams.from_dict(ctx.params_of("code"))
    from r1lab.sandbox import Job  # lazy
    from r1lab.sandbox import pool as sandbox_pool

    scores: list[float | BaseException | None] = [None] * len(completions)
    jobs, slots = [], []
    for i, (completion, example) in enumerate(zip(completions, examples)):
        try:
            tests, entry_point, setup = problem_of(example)
        except ValueError as err:
            scores[i] = err
            continue
        code = extract_code(completion)
        if code is None:
            scores[i] = 0.0
            continue
        program = build_program(code, example)
        if program is None:
            scores[i] = params.syntax_error
            continue
        jobs.append(Job(program, tests, entry_point, setup))
        slots.append(i)

    limits, workers, warm = params.limits(), params.workers or None, params.sandbox == "warm"
    results = sandbox_pool.run_many(jobs, limits, workers, warm=warm)
    references: dict[str, float | BaseException] = {}
    if params.speed_bonus:
        references = _reference_times([examples[i] for i, r in zip(slots, results) if _passed(r)], limits, workers,
                                      warm)
    for i, result in zip(slots, results):
        if isinstance(result, BaseException):
            scores[i] = result
            continue
        reference = references.get(examples[i].id) if result.all_passed and params.speed_bonus else None
        if isinstance(reference, BaseException):
            scores[i] = reference
            continue
        scores[i] = grade(result, params, reference)
    return scores  # type: ignore[return-value]


def _passed(result) -> bool:
    return not isinstance(result, BaseException) and result.all_passed


def _reference_times(examples: list[Example], limits, workers, warm: bool) -> dict[str, float | BaseException]:
    """Time of each problem's reference solution (``meta['reference']``), run once per problem in this batch."""
    from r1lab.sandbox import Job
    from r1lab.sandbox import pool as sandbox_pool

    unique = list({e.id: e for e in examples}.values())
    times: dict[str, float | BaseException] = {}
    jobs, ids = [], []
    for example in unique:
        reference = example.meta.get("reference")
        if not reference:
            times[example.id] = ValueError(f"speed_bonus needs a reference solution; example {example.id} has none")
            continue
        tests, entry_point, setup = problem_of(example)
        jobs.append(Job(reference, tests, entry_point, setup))
        ids.append(example.id)
    for example_id, result in zip(ids, sandbox_pool.run_many(jobs, limits, workers, warm=warm)):
        if isinstance(result, BaseException):
            times[example_id] = result
        elif not result.all_passed:
            times[example_id] = ValueError(
                f"the reference solution of {example_id} fails its own tests: {result.error}")
        else:
            times[example_id] = result.duration_s
    return times


code_reward.check_params = CodeRewardParams.from_dict  # config-time validation of rewards.params.code
