"""``mmrec encode CATALOG --out STORE``."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.cli._common import (
    DEVICE_HELP,
    RichProgress,
    handle_errors,
    on_device,
    print_json,
    split_list,
    stdout,
)
from mmrec.encoding import EncodeReport
from mmrec.encoding import encode as encode_lib
from mmrec.enums import DeviceChoice, Engine, OnError
from mmrec.resources import preset_names

PRESET_HELP = f"Encoder bundle (one encoder per modality): {', '.join(preset_names())}."


@handle_errors
def encode(
    catalog: Path = typer.Argument(..., help="Catalog file: .jsonl, .csv or .tsv, one item per row."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to create or update."),
    preset: str = typer.Option("default", metavar="NAME", help=PRESET_HELP),
    modalities: str = typer.Option(None, metavar="MODALITIES",
                                   help="Comma list of text,image,audio (default: all present)."),
    text_fields: str = typer.Option(None, metavar="FIELDS",
                                    help="Comma list of columns joined into the item text."),
    text_encoder: str = typer.Option(None, metavar="ENCODER",
                                     help="Override the preset's text encoder (see `mmrec encoders`)."),
    image_encoder: str = typer.Option(None, metavar="ENCODER",
                                      help="Override the preset's image encoder."),
    audio_encoder: str = typer.Option(None, metavar="ENCODER",
                                      help="Override the preset's audio encoder."),
    batch_size: int = typer.Option(None, min=1, help="Inputs per forward pass (default: the fastest for each encoder and device)."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    threads: int = typer.Option(None, min=1, help="CPU threads for torch."),
    on_error: OnError = typer.Option(OnError.SKIP, help="skip bad rows and report them, or fail."),
    engine: Engine = typer.Option(Engine.LOCAL, help="local: this process; ray: a pool of Ray actors (pip install 'mmrec[ray]')."),
    workers: int = typer.Option(None, min=1, help="Ray actors, one encoder each (default: the cluster's GPUs, else its CPUs up to 8)."),
    ray_address: str = typer.Option(None, help="Ray cluster to join (default: RAY_ADDRESS, else a local one for this run)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Embed every item (text, image, audio) of CATALOG into the store OUT, incrementally."""
    from mmrec.runtime import set_threads

    set_threads(threads)
    overrides = {m: n for m, n in (("text", text_encoder), ("image", image_encoder),
                                   ("audio", audio_encoder)) if n}
    wanted = split_list(modalities)
    with RichProgress() as progress:
        report = encode_lib(
            catalog, out, preset=preset, encoders=overrides, modalities=wanted,
            text_fields=split_list(text_fields), batch_size=batch_size, device=device.value,
            on_error=on_error, progress=progress, engine=engine, workers=workers,
            ray_address=ray_address,
        )
    if as_json:
        print_json(report.as_dict())
    else:
        render(report)


def render(report: EncodeReport) -> None:
    from rich.table import Table

    console = stdout()
    table = Table("modality", "encoder", "vectors", "encoded", "reused", box=None)
    for modality, count in report.vectors.items():
        table.add_row(modality, report.encoders.get(modality, "?"), str(count),
                      str(report.encoded.get(modality, 0)), str(report.reused.get(modality, 0)))
    console.print(f"{report.store}: {report.items} items{on_device(report.device)} "
                  f"in {report.seconds:.1f}s" + (f", {report.removed} removed" if report.removed else ""))
    console.print(table)
    if report.skipped:
        console.print(f"skipped {len(report.skipped)}:")
        for problem in report.skipped:
            console.print(f"  {problem}", markup=False)
