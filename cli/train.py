"""``mmrec train [--store STORE] [--aligner ALIGNER] --interactions FILE --out MODEL``."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.cli._common import (
    DEVICE_HELP,
    RichProgress,
    handle_errors,
    on_device,
    print_json,
    print_read,
    stdout,
)
from mmrec.distributed import is_main
from mmrec.enums import DeviceChoice, IndexType, ModelKind, SplitKind, TuneTarget
from mmrec.index import INDEX_HELP
from mmrec.recsys.config import ITEM_ITEM_MAX, TrainConfig
from mmrec.recsys.content_tune import ContentTuning


@handle_errors
def train(
    interactions: Path = typer.Option(..., "--interactions", "-i",
                                      help="user,item[,rating][,timestamp] as .csv/.tsv/.jsonl, or a RecBole .inter file."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    store: Path = typer.Option(None, help="Store whose modalities (concatenated) are the item content; with --aligner, where the aligner's store now lives."),
    aligner: Path = typer.Option(None, help="Aligner whose fused vectors are the item content."),
    model: ModelKind = typer.Option(ModelKind.TWOTOWER, help="twotower, or a baseline: bpr, itemknn (content), or on interactions alone (need no store): pop, ease, ials, itemcf."),
    split: SplitKind = typer.Option(SplitKind.TEMPORAL, help="temporal (per user by time), random, or cold-item."),
    epochs: int = typer.Option(None, min=1, help="Most epochs (early stopping on valid NDCG@20)."),
    batch_size: int = typer.Option(None, min=2, help="Training pairs per step."),
    lr: float = typer.Option(None, help="Peak learning rate."),
    weight_decay: float = typer.Option(None, min=0.0, help="AdamW weight decay (twotower), L2 (bpr)."),
    warmup: int = typer.Option(TrainConfig.warmup, min=0, help="Linear warm-up steps before the cosine decay."),
    temperature: float = typer.Option(TrainConfig.temperature, help="Softmax temperature (twotower)."),
    negatives: int = typer.Option(0, min=0, help="Extra uniform negatives per batch (twotower)."),
    hard_negatives: int = typer.Option(0, min=0, help="Hard negatives per example, mined from the index each epoch (twotower)."),
    dim: int = typer.Option(TrainConfig.dim, min=1, help="Embedding size."),
    id_dropout: float = typer.Option(TrainConfig.id_dropout, help="Chance an id vector is dropped in a step (twotower)."),
    recent: int = typer.Option(None, min=0, help="The user tower also averages the latest N items (twotower; default 10 for --split temporal, else 0)."),
    patience: int = typer.Option(None, min=1, help="Epochs without validation gain before stopping."),
    item_item: bool = typer.Option(None, "--item-item/--no-item-item", help=f"twotower: add an EASE item-item term to the score (default: on up to {ITEM_ITEM_MAX:,} items, off with --dp-epsilon; --item-item: up to 30,000); its lambda is --reg."),
    item_item_weight: float = typer.Option(None, min=0.0, help="twotower: the item-item term's weight (default: chosen on validation; 0: the towers alone)."),
    reg: float = typer.Option(None, help="EASE lambda (also the twotower's item-item term's) or iALS regularisation (default: chosen on validation)."),
    alpha: float = typer.Option(None, min=0.0, help="iALS confidence 1+alpha of an interaction (default: chosen on validation)."),
    factors: int = typer.Option(None, min=1, help="iALS factors (default: chosen on validation)."),
    neighbours: int = typer.Option(None, min=1, help="itemcf: similar items kept per item (default: chosen on validation)."),
    shrink: float = typer.Option(None, min=0.0, help="itemcf: cosine shrinkage (default: chosen on validation)."),
    min_rating: float = typer.Option(None, help="Keep only interactions rated at least this."),
    user_field: str = typer.Option(None, help="User id column (default: user, user_id, ...)."),
    item_field: str = typer.Option(None, help="Item id column (default: item, item_id, ...)."),
    rating_field: str = typer.Option(None, help="Rating column (default: rating)."),
    timestamp_field: str = typer.Option(None, help="Timestamp column (default: timestamp, time)."),
    no_test: bool = typer.Option(False, "--no-test", help="Hold out only the validation part (early stopping); evaluate later with `mmrec evaluate MODEL --test FILE`."),
    anonymize: bool = typer.Option(False, "--anonymize", help="Keep user ids only as keyed hashes (HMAC-SHA256); needs --key."),
    key: Path = typer.Option(None, "--key", help="Secret key file for --anonymize, outside the model directory (created if absent)."),
    dp_epsilon: float = typer.Option(None, "--dp-epsilon", help="Train the twotower with DP-SGD (opacus, user-level) to this epsilon."),
    dp_delta: float = typer.Option(None, "--dp-delta", help="DP-SGD delta (default: min(1e-5, 0.1/users))."),
    dp_max_grad_norm: float = typer.Option(TrainConfig.dp_max_grad_norm, "--dp-max-grad-norm", help="DP-SGD: each user's gradient is clipped to this norm."),
    seed: int = typer.Option(0, help="Seed for the split, sampling and initialisation."),
    index: IndexType = typer.Option(IndexType.AUTO, help=INDEX_HELP),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    threads: int = typer.Option(None, min=1, help="CPU threads for torch."),
    tune: TuneTarget = typer.Option(TuneTarget.NONE, help="text: also tune the store's text encoder's top layers on behaviour (twotower); saved in the model, used for every item vector."),
    tune_layers: int = typer.Option(ContentTuning.layers, min=1, help="With --tune text: transformer layers unfrozen, from the top."),
    tune_lr: float = typer.Option(ContentTuning.lr, min=0.0, help="With --tune text: peak learning rate of the unfrozen layers."),
    tune_warmup: int = typer.Option(ContentTuning.warmup, min=0, help="With --tune text: linear warm-up steps before the cosine decay."),
    tune_rows: int = typer.Option(ContentTuning.rows, help="With --tune text: a step's positive items re-encoded with gradients, at most (a seeded sample beyond); the step's other items take the encoder's cached vectors."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Train a recommender (two-tower or a baseline) on interactions over a store's items."""
    from mmrec.errors import ConfigError
    from mmrec.recsys.train import train as run
    from mmrec.runtime import set_threads

    if anonymize != (key is not None):
        raise ConfigError("--anonymize and --key go together",
                          hint="--anonymize --key KEYFILE: the key file is created if absent")

    if tune is TuneTarget.IMAGE:
        raise ConfigError("train --tune takes text (the items' text encoder), not image")
    tuning = ContentTuning(tune_layers, tune_lr, tune_warmup, tune_rows) if tune is TuneTarget.TEXT else None
    set_threads(threads)
    config = TrainConfig(model=model, split=split, epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, warmup=warmup, temperature=temperature,
                         negatives=negatives, hard_negatives=hard_negatives, dim=dim,
                         id_dropout=id_dropout, recent=recent, patience=patience, test=not no_test, seed=seed,
                         device=device.value, min_rating=min_rating, user_field=user_field,
                         item_field=item_field, rating_field=rating_field,
                         timestamp_field=timestamp_field, index=index, dp_epsilon=dp_epsilon,
                         dp_delta=dp_delta, dp_max_grad_norm=dp_max_grad_norm, reg=reg, alpha=alpha,
                         factors=factors, neighbours=neighbours, shrink=shrink,
                         item_item=item_item, item_item_weight=item_item_weight)
    with RichProgress() as progress:
        report = run(store=store, aligner=aligner, interactions=interactions, out=out,
                     config=config, progress=progress, key=key, tune=tuning)
    if not is_main():  # under torchrun only rank 0 reports
        return
    if as_json:
        print_json(report.as_dict())
        return
    console = stdout()
    parts = report.interactions
    console.print(f"{report.out}: {report.model} on {report.users} users x {report.items} items, "
                  f"{report.split} split (train {parts['train']}, valid {parts['valid']}, "
                  f"test {parts['test']}) in {report.seconds:.1f}s{on_device(report.device)}")
    print_read(console, report.read, "absent from the store")
    if report.epochs:
        console.print(f"best epoch {report.best_epoch} of {report.epochs}")
    if report.privacy:
        dp = report.privacy
        console.print(f"DP-SGD: epsilon {dp['epsilon']:.3f} spent at delta {dp['delta']:.2g} "
                      f"(per {dp['unit']}, noise {dp['noise_multiplier']}, {dp['steps']} steps)")
    if report.tuning.get("chosen"):
        console.print("chosen on validation: " + ", ".join(f"{k} {v:g}" for k, v in
                                                          report.tuning["chosen"].items()))
    if report.text_tuning:
        t = report.text_tuning
        console.print(f"text encoder {t['encoder']} tuned: top {t['layers']} layers, lr {t['lr']:g}, "
                      f"{t['warmup']} warm-up steps, at most {t['rows']} rows a step ({t['file']})", markup=False)
    if report.valid:
        console.print("validation: " + "  ".join(f"{k} {v:.4f}" for k, v in report.valid.items()
                                                 if "@" in k))
