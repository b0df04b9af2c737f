"""Tasks: sources of Examples with a verifier. ``load_task`` dispatches on the name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r1lab.tasks.base import SPLITS, Task

if TYPE_CHECKING:
    from r1lab.config import TaskConfig


def load_task_config(cfg: "TaskConfig") -> Task:
    """The task a job's ``task`` section describes; every job loads its task through here. An evaluation's section
    also chooses the split (all or held_out) and may leave eval_size unset (r1lab.evals.config)."""
    split = cfg.resolved_split() if hasattr(cfg, "resolved_split") else "held_out"
    eval_size = cfg.resolved_eval_size() if hasattr(cfg, "resolved_eval_size") else cfg.eval_size
    if cfg.name.startswith("hf:"):  # its columns and splits are fields of the section, not task.params
        from r1lab.tasks.hf import load_hf_task

        return load_hf_task(cfg, split, eval_size)
    return load_task(cfg.name, cfg.resolved_params(), cfg.seed, cfg.train_size, eval_size, cfg.eval_path, split)


def generates_problems(name: str) -> bool:
    """True for tasks that generate their problems (reasoning-gym, and mixes of sources): they have no fixed list
    of problems to evaluate all of, only a seeded held-out set."""
    return name.startswith("rg:") or name == "mix"


def load_task(
    name: str, params: dict[str, Any] | None = None, seed: int = 0, train_size: int = 5000,
    eval_size: int | None = 200, eval_path: str | None = None, split: str = "held_out",
) -> Task:
    """``rg:NAME`` -> a reasoning-gym dataset (``params`` go to its config); a .jsonl/.parquet path -> user data;
    ``math:PATH`` -> user data checked by math-verify. ``split``: held_out (training jobs: a training set and
    ``eval_size`` held-out problems) or all (evaluation of a fixed benchmark: every problem, or ``eval_size`` of
    them, and no training set; see ``split_task``)."""
    params = dict(params or {})
    if name.startswith("hf:"):
        raise ValueError(f"task {name}: hf: tasks are described by a whole task section (columns, splits); load "
                         "them with load_task_config, and not as a mix source")
    if split not in SPLITS:
        raise ValueError(f"task {name}: split {split!r}; allowed: {', '.join(SPLITS)}")
    if split == "all" and generates_problems(name):
        raise ValueError(f"task {name} generates its problems: there is no fixed set to evaluate all of; use split "
                         f"held_out (its eval_size held-out problems)")
    if split == "all" and eval_path:
        raise ValueError(f"task {name}: task.eval_path is the held-out file of split held_out; to evaluate that "
                         f"file alone, name it as the task")
    if name.startswith("rg:"):
        from r1lab.tasks.gym import load_gym_task

        return load_gym_task(name[3:], params, seed, train_size, eval_size)
    if name.startswith("math:"):  # a user file whose answers are checked by math-verify
        from r1lab.tasks.math import load_math_file_task

        return load_math_file_task(name[5:], seed, eval_size, eval_path, verifier=params, split=split)
    if name == "humaneval" or name.startswith("code:"):  # code run against unit tests in the sandbox
        from r1lab.tasks.code import load_code_task

        if params:
            raise ValueError(f"task {name}: task.params apply only to rg: tasks (and math: tasks' verifier "
                             f"settings), got {params}")
        return load_code_task(name, seed, eval_size, eval_path, split)
    if name == "mix":  # several sources, each example scored by its own source (r1lab.tasks.mix)
        from r1lab.tasks.mix import load_mix_task

        return load_mix_task(params, seed, train_size, eval_size)
    if name == "general" or name.startswith("general:"):  # general prompts, no answer (reward-model scored)
        from r1lab.tasks.mix import load_general_task

        if params:
            raise ValueError(f"task {name}: takes no task.params, got {params}")
        return load_general_task(name, seed, eval_size, split)
    if name.endswith((".jsonl", ".json", ".parquet")):
        from r1lab.tasks.files import load_file_task

        if params:
            raise ValueError(f"task {name}: task.params apply only to rg: tasks (and math: tasks' verifier "
                             f"settings), got {params}")
        return load_file_task(name, seed, eval_size, eval_path, split)
    raise ValueError(f"unknown task {name!r}: use 'rg:<reasoning-gym dataset>' (e.g. rg:chain_sum), "
                     "a .jsonl/.parquet file, math:<file> to check its answers with math-verify, hf:<dataset folder, "
                     "files or cached hub id> (e.g. hf:openai/gsm8k), "
                     "humaneval, code:<file.jsonl> for code problems with tests, general[:<file.jsonl>] for "
                     "general prompts without answers, or mix (task.params.sources) to mix several")


__all__ = ["SPLITS", "Task", "generates_problems", "load_task", "load_task_config"]
