"""Deterministic, resumable order over training examples: a fresh seeded permutation each epoch."""

from __future__ import annotations

import random
from typing import Any


class PromptSampler:
    def __init__(self, num_examples: int, seed: int):
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(self.num_examples))
        random.Random(self.seed * 1_000_033 + epoch).shuffle(order)
        return order

    def next_indices(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.position == self.num_examples:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            out.append(self._order[self.position])
            self.position += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "num_examples": self.num_examples, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_examples"] != self.num_examples or state["seed"] != self.seed:
            raise ValueError("checkpoint was written for a different dataset or seed; resume with the same task config")
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation(self.epoch)
