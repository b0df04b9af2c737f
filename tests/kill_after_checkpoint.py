"""Run the ``r1lab`` CLI and SIGKILL it right after its training loop writes the checkpoint of step STEP: the state
on disk of a run killed between two steps (with a checkpoint every step, a kill at the start of step STEP + 1).
Fault injection for the exact-resume tests; the product has none.

    python tests/kill_after_checkpoint.py STEP ARGS...     (ARGS as for ``r1lab``)
"""

from __future__ import annotations

import os
import signal
import sys

from r1lab.train import checkpoint


def kill_after_checkpoint(step: int) -> None:
    """The loops save through the module (``ckpt.save_checkpoint``), so replacing its function reaches them all."""
    save = checkpoint.save_checkpoint

    def save_then_die(root, at_step: int, *args, **kwargs):
        path = save(root, at_step, *args, **kwargs)
        if at_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return path

    checkpoint.save_checkpoint = save_then_die


if __name__ == "__main__":
    from r1lab.cli import main

    kill_after_checkpoint(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
