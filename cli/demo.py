"""``mmrec demo``: encode the bundled catalog and show what each modality finds."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.cli._common import DEVICE_HELP, RichProgress, handle_errors, print_json, stdout
from mmrec.runtime import DeviceChoice


@handle_errors
def demo(
    out: Path = typer.Option(None, "--out", "-o", help="Store directory (default: $MMREC_HOME/demo/store)."),
    items: int = typer.Option(8, min=1, help="How many items to show."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Encode the small real catalog shipped with mmrec and show nearest neighbours."""
    from rich.table import Table

    from mmrec import demo as lib

    with RichProgress() as progress:
        report, found = lib.run(out, device=device.value, progress=progress)
    if as_json:
        print_json({"encode": report.as_dict(), **found})
        return
    console = stdout()
    console.print(f"encoded {report.items} items into {report.store} on {report.device} "
                  f"in {report.seconds:.1f}s ({', '.join(f'{m}: {n}' for m, n in report.vectors.items())})")
    titles, near = found["titles"], found["neighbours"]
    table = Table("item", *(f"nearest by {m}" for m in near), box=None)
    for item_id in list(titles)[:items]:
        cells = []
        for modality in near:
            hits = near[modality].get(item_id)
            cells.append(", ".join(titles[h] for h, _ in hits[:2]) if hits else "-")
        table.add_row(titles[item_id], *cells)
    console.print(table)
