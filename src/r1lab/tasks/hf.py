"""Hugging Face datasets as tasks (``hf:SOURCE``): GSM8K, MATH-500, AIME, Countdown and any dataset like them.

The source is opened by ``r1lab.data.hf_source`` (a save_to_disk folder, data files, or a cached hub id); the task
section says which columns hold the question and the gold answer and how the gold is written (``task.prompt_field``,
``task.answer_field``, ``task.answer_format``), which dataset splits train and which is held out
(``task.train_split``, ``task.eval_split``), and how answers are checked (``task.scorer``). Every other column is
kept in ``Example.meta``. An example's id is ``SOURCE:SPLIT[ROW]``, the row's index in that split (``ds[ROW]``).
"""

from __future__ import annotations

import string
from functools import partial
from typing import TYPE_CHECKING, Any

from r1lab.data.hf_source import DatasetSourceError, open_splits
from r1lab.rewards.extract import from_boxed
from r1lab.tasks.base import Task, drop_held_out, normalised_match, split_task
from r1lab.types import Example

if TYPE_CHECKING:
    from r1lab.config import TaskConfig

PREFIX = "hf:"
# Column names the common benchmarks use, tried in order when the task section names none
PROMPT_COLUMNS = ("prompt", "question", "problem")
ANSWER_COLUMNS = ("answer", "solution", "target")


def load_hf_task(cfg: "TaskConfig", split: str = "held_out", eval_size: int | None = None) -> Task:
    """The task ``cfg`` (a task section whose name is ``hf:SOURCE``) describes. ``split`` and ``eval_size`` as in
    ``split_task`` (held_out: training and held-out problems; all: only problems to evaluate, every one when
    ``eval_size`` is None); with ``task.eval_split`` the held-out problems are that split's first rows."""
    source, name = cfg.name[len(PREFIX):], cfg.name
    scorer = _scorer(cfg.scorer, dict(cfg.resolved_params()), name)
    splits = open_splits(source, cfg.subset)
    # Columns are read from the split that is loaded first; every split of a dataset has the same ones
    first = _split(splits, cfg.eval_split if cfg.eval_split and split == "all" else cfg.train_split, name)
    columns = list(first.column_names)
    prompt_of = _prompt_reader(cfg.prompt_field, columns, name)
    answer_column = _column(cfg.answer_field, ANSWER_COLUMNS, columns, "task.answer_field", name)
    if cfg.scorer == "countdown":  # the numbers stay in Example.meta, where the scorer reads them
        numbers = _column(cfg.resolved_params().get("numbers_field", "nums"), (), columns, "task.params.numbers_field",
                          name)
        if numbers in (answer_column, prompt_of.column):
            raise DatasetSourceError(f"task {name}: task.params.numbers_field {numbers!r} is also the question or "
                                     "answer column; name the column holding the numbers")
    read = partial(_examples, source=source, prompt_of=prompt_of, answer_column=answer_column,
                   answer_format=cfg.answer_format)
    if not cfg.eval_split:
        return split_task(name, read(first, cfg.train_split), cfg.seed, eval_size, scorer, split)
    eval_ds = _split(splits, cfg.eval_split, name)
    rows = len(eval_ds) if eval_size is None else min(eval_size, len(eval_ds))
    held_out = read(eval_ds.select(range(rows)), cfg.eval_split)
    if split == "all":
        return Task(name=name, train=[], eval=held_out, scorer=scorer, eval_only=True)
    train = drop_held_out(read(first, cfg.train_split), held_out)
    return Task(name=name, train=train, eval=held_out, scorer=scorer)


def _split(splits: dict[str, Any], split: str, name: str):
    if split not in splits:
        raise DatasetSourceError(f"task {name}: no split {split!r} (task.train_split, task.eval_split); its splits: "
                                 f"{', '.join(splits)}")
    return splits[split]


def _column(requested: str, candidates: tuple[str, ...], columns: list[str], key: str, name: str) -> str:
    """``requested`` when the dataset has it; else (when empty) the first of ``candidates`` it has."""
    if requested:
        if requested not in columns:
            raise DatasetSourceError(f"task {name}: no column {requested!r} ({key}); its columns: {', '.join(columns)}")
        return requested
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise DatasetSourceError(f"task {name}: none of the columns {', '.join(candidates)}; set {key} to one of its "
                                 f"columns: {', '.join(columns)}")
    return found


class _PromptReader:
    """The question of a row: one column's value, or a template filled with the row's columns."""

    def __init__(self, column: str = "", template: str = ""):
        self.column, self.template = column, template

    def __call__(self, row: dict[str, Any]) -> Any:
        return self.template.format_map(row) if self.template else row[self.column]


def _prompt_reader(field: str, columns: list[str], name: str) -> _PromptReader:
    if "{" not in field:
        return _PromptReader(column=_column(field, PROMPT_COLUMNS, columns, "task.prompt_field", name))
    try:
        names = {part[1] for part in string.Formatter().parse(field) if part[1] is not None}
    except ValueError as err:
        raise DatasetSourceError(f"task {name}: task.prompt_field {field!r} is not a valid template ({err}); write a "
                                 "literal brace as {{ or }}") from None
    missing = sorted(n for n in names if n not in columns)
    if missing or "" in names:
        raise DatasetSourceError(f"task {name}: task.prompt_field names {', '.join(missing) or '{}'}, not columns of "
                                 f"the dataset; its columns: {', '.join(columns)}")
    return _PromptReader(template=field)


def gold_answer(value: Any, answer_format: str) -> str | None:
    """The gold answer in a column's value, or None when the format's marker is missing."""
    text = str(value).strip()
    if answer_format == "auto":
        answer_format = "gsm8k" if "####" in text else "boxed" if "\\boxed" in text else "plain"
    if answer_format == "plain":
        return text
    if answer_format == "gsm8k":  # "...reasoning...\n#### 1,234": the final answer, thousands separators dropped
        if "####" not in text:
            return None
        final = text.rsplit("####", 1)[1].strip()
        plain_number = final.replace(",", "")
        return plain_number if plain_number.lstrip("-").replace(".", "", 1).isdigit() else final
    if answer_format == "boxed":
        return from_boxed(text)
    raise ValueError(f"unknown answer format {answer_format!r}; allowed: auto, plain, gsm8k, boxed")


def _examples(ds, split: str, *, source: str, prompt_of: _PromptReader, answer_column: str,
              answer_format: str) -> list[Example]:
    out, prompt_column = [], prompt_of.column  # empty for a template, whose columns all stay in meta
    for i, row in enumerate(ds.to_list()):
        where = f"{source}:{split}[{i}]"
        question = prompt_of(row)
        messages = None
        if isinstance(question, list):  # chat turns, as in TRL's conversational datasets
            if not question or not all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in question):
                raise DatasetSourceError(f"{where}: column {prompt_column!r} must be text or a list of "
                                         "{role, content} turns")
            messages, question = question, None
        elif not isinstance(question, str) or not question.strip():
            raise DatasetSourceError(f"{where}: column {prompt_column!r} is {str(question)[:80]!r}, not a question")
        if row.get(answer_column) is None:
            raise DatasetSourceError(f"{where}: column {answer_column!r} (the gold answer) is empty")
        gold = gold_answer(row[answer_column], answer_format)
        if gold is None:
            marker = "'####'" if answer_format == "gsm8k" else "\\boxed{...}"
            raise DatasetSourceError(f"{where}: column {answer_column!r} has no {marker} "
                                     f"(task.answer_format={answer_format}); its value: {str(row[answer_column])[:80]!r}")
        meta = {k: v for k, v in row.items() if k not in (prompt_column, answer_column)}
        out.append(Example(id=where, answer=gold, prompt=question, messages=messages, meta=meta))
    return out


def _scorer(kind: str, params: dict[str, Any], name: str):
    if kind == "math":
        from r1lab.rewards.mathcheck import check_math_params
        from r1lab.tasks.math import math_scorer

        return partial(math_scorer, settings=check_math_params(params, owner=f"task {name}: task.params"))
    if kind == "countdown":
        unknown = sorted(set(params) - {"numbers_field"})
        if unknown:
            raise ValueError(f"task {name}: task.params {', '.join(unknown)} do not apply to scorer countdown; "
                             "allowed: numbers_field")
        return partial(_countdown_scorer, numbers_field=params.get("numbers_field", "nums"))
    if kind == "match":
        if params:
            raise ValueError(f"task {name}: scorer match takes no task.params, got {params}")
        return lambda answer, example: normalised_match(answer, example.answer)
    raise ValueError(f"task {name}: unknown scorer {kind!r}; allowed: math, match, countdown")


def _countdown_scorer(answer: str, example: Example, numbers_field: str) -> float:
    from r1lab.rewards.countdown import countdown_score

    return countdown_score(answer, example.meta[numbers_field], example.answer)
