"""``mmrec align STORE --out ALIGNER``: fit projection heads, write a searchable aligner."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.alignment.config import DEFAULT_SHARED_DIM, AlignConfig, parse_weights
from mmrec.cli._common import (
    DEVICE_HELP,
    RichProgress,
    handle_errors,
    print_json,
    split_list,
    stdout,
)
from mmrec.distributed import is_main
from mmrec.enums import DeviceChoice, HeadKind, IndexType, Pivot, Precision, TuneParams, TuneTarget
from mmrec.index import INDEX_HELP

_D = AlignConfig  # every default below is the library's own (AlignConfig's fields)
_DEVICE = DeviceChoice(_D.device)


@handle_errors
def align(
    store: Path = typer.Argument(..., help="Store directory made by `mmrec encode`."),
    out: Path = typer.Option(..., "--out", "-o", help="Aligner directory to write (replaced if it is one)."),
    pivot: Pivot = typer.Option(_D.pivot, help="text: map into the text encoder's space; shared: a learned space for all."),
    dim: int = typer.Option(_D.dim, min=2, help=f"Size of the shared space (--pivot shared; default {DEFAULT_SHARED_DIM})."),
    head: HeadKind = typer.Option(_D.head, help="Projection head per modality."),
    hidden: int = typer.Option(_D.hidden, min=1, help="Width of the mlp head's hidden layer."),
    steps: int = typer.Option(_D.steps, min=0, help="Optimizer steps at most (early stopping usually ends sooner); 0: no training, apply the initial heads (zero-shot)."),
    epochs: int = typer.Option(_D.epochs, min=1, help="Instead of --steps: passes over the training pairs."),
    batch_size: int = typer.Option(_D.batch_size, min=2, help="Items per step (in-batch negatives)."),
    lr: float = typer.Option(_D.lr, min=0.0, help="AdamW learning rate."),
    weight_decay: float = typer.Option(_D.weight_decay, min=0.0, help="AdamW weight decay of the heads (never of the temperature)."),
    val_split: float = typer.Option(_D.val_split, min=0.0, max=0.95, help="Share of items held out for early stopping and evaluation."),
    eval_every: int = typer.Option(_D.eval_every, min=1, help="Optimizer steps between validation checks."),
    patience: int = typer.Option(_D.patience, min=1, help="Validation checks without improvement before stopping."),
    seed: int = typer.Option(_D.seed, help="Seed of the split, the initial weights and the batches."),
    init: Path = typer.Option(_D.init, help="Start from this aligner's (or heads directory's) heads instead of the shipped ones."),
    from_scratch: bool = typer.Option(_D.from_scratch, "--from-scratch", help="Start from random heads, not the shipped ones."),
    bridge: bool = typer.Option(_D.bridge, "--bridge/--no-bridge", help="Mix in the ImageNet-label bridge for images (offline default encoders only)."),
    bridge_weight: float = typer.Option(_D.bridge_weight, min=0.0, max=1.0, help="Weight of the bridge in image vectors (default: chosen on validation)."),
    memory_weight: float = typer.Option(_D.memory_weight, min=0.0, max=4.0, help="Weight of the pair memory in image and audio vectors: the texts of the training items that look (sound) most alike (default: chosen on validation; 0: off)."),
    hub_weight: float = typer.Option(_D.hub_weight, min=0.0, max=4.0, help="Weight of the hubness correction (CSLS) in each modality's index (default: chosen on validation; 0: off)."),
    modalities: str = typer.Option(None, help="Comma list of modalities to align (default: all in the store)."),
    fusion: str = typer.Option(None, help="Weights of the modalities in the fused item vector, e.g. text=1,image=0.5 (default 1 each)."),
    device: DeviceChoice = typer.Option(_DEVICE, help=DEVICE_HELP),
    precision: Precision = typer.Option(_D.precision, help="Training precision: auto is bf16 autocast on CUDA where supported, fp32 elsewhere."),
    index: IndexType = typer.Option(_D.index, help=INDEX_HELP),
    tune: TuneTarget = typer.Option(_D.tune, help="text: also tune the text encoder's top layers (LiT), re-encoding each batch's texts; image: the image encoder's top blocks, text locked. Saved in the aligner and used for queries. From --init FITTED (an aligner), give the heads a small --lr (1e-5): at 1e-3 they re-memorise the training pairs."),
    tune_layers: int = typer.Option(_D.tune_layers, min=1, help="With --tune: transformer layers unfrozen, from the top."),
    tune_lr: float = typer.Option(_D.tune_lr, min=0.0, help="With --tune: peak learning rate of the unfrozen layers (heads keep --lr)."),
    tune_warmup: int = typer.Option(_D.tune_warmup, min=0, help="With --tune: linear warm-up steps before the cosine decay."),
    tune_params: TuneParams = typer.Option(_D.tune_params, help="With --tune: which parameters of the top layers train: every weight, bitfit (biases and norms) or lora (low-rank attention updates, text only)."),
    tune_rank: int = typer.Option(_D.tune_rank, min=1, help="With --tune-params lora: the rank of the updates."),
    tune_captions: int = typer.Option(_D.tune_captions, min=0, help="With --tune text: captions per item sampled from its own fields, one drawn per step (0: the encoded text only)."),
    tune_l2sp: float = typer.Option(_D.tune_l2sp, min=0.0, help="With --tune: weight of the L2-SP pull of the tuned tensors toward the pretrained ones."),
    tune_tolerance: float = typer.Option(_D.tune_tolerance, min=0.0, help="With --tune: a kept step may lose at most this many standard errors of each pair's validation R@10 against the untuned fitted heads; if no step keeps every pair, the untuned heads are kept (0: no pair may lose)."),
    val_smoothing: float = typer.Option(_D.val_smoothing, min=0.0, max=0.99, help="Early stopping compares an exponential moving average of the validation checks with this weight on the past (0: raw checks)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
) -> None:
    """Fit one projection head per modality (InfoNCE, early stopping) and index the items."""
    import mmrec

    options = dict(pivot=pivot, dim=dim, head=head, hidden=hidden, steps=steps, epochs=epochs,
                   batch_size=batch_size, lr=lr, weight_decay=weight_decay, val_split=val_split,
                   eval_every=eval_every, patience=patience, seed=seed, init=str(init) if init else None,
                   from_scratch=from_scratch, bridge=bridge, bridge_weight=bridge_weight,
                   memory_weight=memory_weight, hub_weight=hub_weight,
                   modalities=split_list(modalities), fusion=parse_weights(fusion),
                   device=DeviceChoice(device).value, precision=precision, index=index,
                   tune=tune, tune_layers=tune_layers, tune_lr=tune_lr, tune_warmup=tune_warmup,
                   tune_params=tune_params, tune_rank=tune_rank, tune_captions=tune_captions,
                   tune_l2sp=tune_l2sp, tune_tolerance=tune_tolerance, val_smoothing=val_smoothing)
    with RichProgress() as progress:
        report = mmrec.align(store, out, progress=progress, **options)
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
    if report.tuning:
        t = report.tuning
        console.print(f"{t['modality']} encoder {t['encoder']} tuned: top {t['layers']} layers "
                      f"({t['params']}), "
                      f"lr {t['lr']:g}, {t['warmup']} warm-up steps, kept step {t['best_step']}",
                      markup=False)
    if report.bridge_weight is not None:
        console.print(f"image bridge weight {report.bridge_weight:.2f} ({report.bridge_weight_from})")
    for label, weights in (("pair memory", report.memory_weights), ("hubness correction", report.hub_weights)):
        if weights:
            console.print(f"{label} weight " + ", ".join(f"{m} {w:g}" for m, w in weights.items()))
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
