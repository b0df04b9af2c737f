"""``python -m r1lab``: the ``r1lab`` command, for launchers that start a module (torchrun -m r1lab, srun python -m r1lab)."""

import sys

from r1lab.cli import main

sys.exit(main())
