"""``mmrec align STORE --out ALIGNER``: fit projection heads, write a searchable aligner."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.align.config import HeadKind, Pivot
from mmrec.cli._common import (
    DEVICE_HELP,
    RichProgress,
    handle_errors,
    print_json,
    split_list,
    stdout,
)
from mmrec.distributed import is_main
from mmrec.runtime import DeviceChoice


@handle_errors
def align(
    store: Path = typer.Argument(..., help="Store directory made by `mmrec encode`."),
    out: Path = typer.Option(..., "--out", "-o", help="Aligner directory to write (replaced if it is one)."),
    pivot: Pivot = typer.Option(Pivot.TEXT, help="text: map into the text encoder's space; shared: a learned space for all."),
    dim: int = typer.Option(None, min=2, help="Size of the shared space (--pivot shared; default 256)."),
    head: HeadKind = typer.Option(HeadKind.LINEAR, help="Projection head per modality."),
    steps: int = typer.Option(None, min=0, help="Optimizer steps at most (early stopping usually ends sooner); 0: no training, apply the initial heads (zero-shot)."),
    epochs: int = typer.Option(None, min=1, help="Instead of --steps: passes over the training pairs."),
    batch_size: int = typer.Option(256, min=2, help="Items per step (in-batch negatives)."),
    lr: float = typer.Option(1e-3, min=0.0, help="AdamW learning rate."),
    val_split: float = typer.Option(0.2, min=0.0, max=0.95, help="Share of items held out for early stopping and evaluation."),
    seed: int = typer.Option(0, help="Seed of the split, the initial weights and the batches."),
    init: Path = typer.Option(None, help="Start from this aligner's (or heads directory's) heads instead of the shipped ones."),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="Start from random heads, not the shipped ones."),
    bridge: bool = typer.Option(True, "--bridge/--no-bridge", help="Mix in the ImageNet-label bridge for images (offline default encoders only)."),
    bridge_weight: float = typer.Option(None, min=0.0, max=1.0, help="Weight of the bridge in image vectors (default: chosen on validation)."),
    modalities: str = typer.Option(None, help="Comma list of modalities to align (default: all in the store)."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
) -> None:
    """Fit one projection head per modality (InfoNCE, early stopping) and index the items."""
    import mmrec

    with RichProgress() as progress:
        report = mmrec.align(
            store, out, progress=progress, pivot=pivot, dim=dim, head=head, steps=steps,
            epochs=epochs, batch_size=batch_size, lr=lr, val_split=val_split, seed=seed,
            init=str(init) if init else None, from_scratch=from_scratch, bridge=bridge,
            bridge_weight=bridge_weight, modalities=split_list(modalities), device=device.value,
        )
    if not is_main():  # under torchrun only rank 0 reports
        return
    if as_json:
        print_json(report.as_dict())
    else:
        render(report)


def render(report) -> None:
    from rich.table import Table

    console = stdout()
    stop = f", stopped early at {report.steps}" if report.stopped_early else ""
    console.print(f"{report.aligner}: {report.items} items ({', '.join(report.modalities)}), "
                  f"{report.pivot} pivot {report.dim}-d, {report.head} heads from {report.init}, "
                  f"best step {report.best_step}{stop}, temperature {report.temperature:.4f}, "
                  f"{report.seconds:.1f}s on {report.device}")
    if report.bridge_weight is not None:
        console.print(f"image bridge weight {report.bridge_weight:.2f} ({report.bridge_weight_from})")
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    if not report.retrieval:
        return
    table = Table(f"validation ({report.val_items} items; chose the stopping step)", "R@1", "R@5", "R@10", "median rank",
                  "gallery", "chance@10", box=None)
    for pair, m in report.retrieval.items():
        table.add_row(pair, f"{m['recall@1']:.3f}", f"{m['recall@5']:.3f}", f"{m['recall@10']:.3f}",
                      f"{m['median_rank']:g}", str(m["gallery"]), f"{m['chance@10']:.3f}")
    console.print(table)
