"""A progress bar with ETA (tqdm) that stays quiet when disabled or not on a terminal-like stream."""

from __future__ import annotations

from typing import Any


class Progress:
    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = ""):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
        self._last = initial

    def update(self, step: int, info: dict[str, Any] | None = None) -> None:
        if self._bar is None:
            return
        self._bar.update(step - self._last)
        self._last = step
        if info:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in info.items() if isinstance(v, float)}, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
