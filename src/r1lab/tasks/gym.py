"""Any reasoning-gym dataset by name (``rg:NAME``), scored by that dataset's own ``score_answer``."""

from __future__ import annotations

from typing import Any

from r1lab.tasks.base import Task, drop_held_out
from r1lab.types import Example

# The held-out generator uses a seed far from the training one so the two streams are independent.
EVAL_SEED_OFFSET = 1_000_003


def load_gym_task(name: str, params: dict[str, Any], seed: int, train_size: int, eval_size: int) -> Task:
    import reasoning_gym  # lazy: heavy import, only needed for rg: tasks

    try:
        train_ds = reasoning_gym.create_dataset(name, seed=seed, size=train_size, **params)
        eval_ds = reasoning_gym.create_dataset(name, seed=seed + EVAL_SEED_OFFSET, size=eval_size, **params)
    except (KeyError, ValueError, TypeError, AssertionError) as err:
        raise ValueError(f"task 'rg:{name}' with params {params}: {err}") from err

    def convert(ds, split: str) -> list[Example]:
        return [
            Example(id=f"rg:{name}/{split}/{i}", prompt=item["question"], answer=str(item["answer"]), meta={"entry": item})
            for i, item in enumerate(ds)
        ]

    held_out = convert(eval_ds, "eval")
    train = drop_held_out(convert(train_ds, "train"), held_out)

    def scorer(answer: str, example: Example) -> float:
        return float(eval_ds.score_answer(answer, example.meta["entry"]))

    return Task(name=f"rg:{name}", train=train, eval=held_out, scorer=scorer)
