"""``python -m mmrec``: the CLI, also as ``torchrun -m mmrec align|train ...``."""
from mmrec.cli.main import main

main()
