"""``mmrec encoders``: list the encoders the registry knows."""
from __future__ import annotations

import typer

from mmrec.cli._common import handle_errors, print_json, stdout


@handle_errors
def encoders(
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """List encoders: name, modality, dimension, and whether the weights are offline."""
    from rich.table import Table

    from mmrec.encoders.registry import list_encoders

    infos = list_encoders()
    if as_json:
        print_json([{"name": i.name, "modality": i.modality.value, "dim": i.dim,
                     "offline": i.offline, "description": i.description} for i in infos])
        return
    table = Table("name", "modality", "dim", "offline", "description", box=None)
    for i in infos:
        table.add_row(i.name, i.modality.value, str(i.dim or "-"), "yes" if i.offline else "no",
                      i.description)
    stdout().print(table)
