"""``mmrec update MODEL --interactions NEW [--out MODEL2]``: fold new behaviour in, no retraining."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.cli._common import (
    DEVICE_HELP,
    RichProgress,
    handle_errors,
    print_json,
    print_read,
    stdout,
)
from mmrec.enums import DeviceChoice


@handle_errors
def update(
    model: Path = typer.Argument(..., help="A model directory written by `mmrec train`."),
    interactions: Path = typer.Option(..., "--interactions", "-i",
                                      help="New user,item[,rating][,timestamp] rows, read as train reads them."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the updated model here (default: republish MODEL in place, atomically)."),
    store: Path = typer.Option(None, help="Where the model's store now lives, if it moved (new items come from its content)."),
    steps: int = typer.Option(0, min=0, help="Also fine-tune a twotower model for this many steps on the new interactions only."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    key: Path = typer.Option(None, "--key", help="Key file of an anonymised model (train --anonymize): new user ids are hashed with it."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Fold new interactions, users and items into a trained model without retraining."""
    import mmrec

    with RichProgress() as progress:
        report = mmrec.update(model, interactions, out=out, store=store, steps=steps,
                              device=device.value, progress=progress, key=key)
    if as_json:
        print_json(report.as_dict())
        return
    console = stdout()
    console.print(f"{report.out}: {report.model} updated with {report.interactions} new interactions "
                  f"({report.new_users} new users, {report.users_updated} users extended, "
                  f"{report.new_items} new items) in {report.seconds:.1f}s")
    print_read(console, report.read, "the model's content does not have")
    if report.items_without_vectors:
        console.print(f"{report.items_without_vectors} new items of the content left out: a "
                      f"{report.model} model cannot place them without retraining", markup=False)
    if report.already_seen:
        console.print(f"skipped {report.already_seen} interactions the model already held")
