"""``python -m mmrec``: the same Typer app as the ``mmrec`` console script."""
from __future__ import annotations

from mmrec.cli.main import main

if __name__ == "__main__":
    main()
