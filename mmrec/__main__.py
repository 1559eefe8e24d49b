"""``python -m mmrec``: the CLI, also as ``torchrun -m mmrec align|train ...``."""
from __future__ import annotations

from mmrec.cli.main import main

if __name__ == "__main__":
    main()
