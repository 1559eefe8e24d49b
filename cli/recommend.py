"""``mmrec recommend DIR``: search an aligner or ask a trained model, through faiss."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmrec.cli._common import DEVICE_HELP, handle_errors, print_json, split_list, stdout
from mmrec.enums import DeviceChoice, ExploreKind
from mmrec.query import Hit, Query


@handle_errors
def recommend(
    path: Path = typer.Argument(..., help="An aligner (search) or model (recommendation) directory."),
    text: str = typer.Option(None, help="Text query."),
    image: Path = typer.Option(None, help="Image query (file)."),
    audio: Path = typer.Option(None, help="Audio query (file)."),
    item: list[str] = typer.Option(None, "--item", help="Item id(s) to find similar items for; repeat to fuse."),
    user: str = typer.Option(None, help="A user the model was trained on."),
    history: str = typer.Option(None, help="Comma list of item ids: a user the model never saw."),
    modality: str = typer.Option("fused", help="Item vectors to search: fused, text, image or audio."),
    k: int = typer.Option(10, "-k", "--top-k", min=1, help="How many results."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Keep items the user already has."),
    explain: bool = typer.Option(False, "--explain", help="Say which history items and modalities drove each score."),
    explore: ExploreKind = typer.Option(None, "--explore", help="Re-rank the model's top 100 for --user with a bandit: ucb, thompson, epsilon (or greedy)."),
    feedback: Path = typer.Option(None, "--feedback", help="The user's feedback events (user,item[,rating]): update the --explore policy."),
    threshold: float = typer.Option(4.0, "--threshold", help="A feedback rating at least this is a reward of 1 (no rating: 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of thompson's draw and epsilon's coin."),
    key: Path = typer.Option(None, "--key", help="Key file of an anonymised model (train --anonymize): --user is hashed with it."),
    store: Path = typer.Option(None, help="A model's store, if it moved since training (only --explain's split by modality reads it)."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Top-K items for a text/image/audio query, item(s), a user, or a history."""
    import mmrec

    query = Query(text=text, image=image, audio=audio, items=list(item or []), user=user,
                  history=split_list(history) or [], modality=modality, k=k,
                  exclude_seen=not include_seen, explain=explain, device=device.value,
                  explore=explore.value if explore else None, feedback=feedback,
                  threshold=threshold, seed=seed)
    hits = mmrec.recommend(path, query, store=store, key=key)
    if as_json:
        print_json({"results": [h.as_dict() for h in hits]})
    else:
        render(hits, explain)


def render(hits: list[Hit], explain: bool) -> None:
    from rich.table import Table

    header = ["#", "id", "title", "score", "matched", *(["why"] if explain else [])]
    rows = []
    for rank, hit in enumerate(hits, start=1):
        why = [describe(hit.explanation)] if explain else []
        rows.append([str(rank), hit.id, hit.title or "", f"{hit.score:.3f}", hit.matched or "", *why])
    # a model's hits match no modality and catalogs may have no titles: no empty columns
    keep = [i for i in range(len(header)) if not rows or any(i < len(row) and row[i] for row in rows)]
    table = Table(*(header[i] for i in keep), box=None)
    for row in rows:
        table.add_row(*(row[i] if i < len(row) else "" for i in keep))
    stdout().print(table)


LABELS = {"history": "history", "similar": "similar to", "user": "user",
          "popularity": "popularity", "modalities": "modalities", "note": "note"}


def describe(explanation: dict[str, Any] | None) -> str:
    """An explanation (numbers, see mmrec.recsys.recommend) as one line of text."""
    parts = []
    for key, value in (explanation or {}).items():
        if value is None:
            continue  # e.g. no user part for a user the model never saw
        parts.append(f"{LABELS.get(key, key)}: {_value(key, value)}")
    return "; ".join(parts)


def describe_items(entries: list[dict[str, Any]]) -> str:
    """``Title (id) +0.082, ...`` for an explanation's history (or similar) items."""
    return ", ".join(f"{h['title'] or h['item']} ({h['item']}) "
                     f"{h.get('contribution', h.get('similarity', 0.0)):+.3f}" for h in entries)


def _value(key: str, value: Any) -> str:
    if key in ("history", "similar"):
        return describe_items(value)
    if key == "modalities":
        return ", ".join(f"{m} {v:+.3f}" for m, v in value.items()) or "none"
    if key == "popularity":
        return f"{value} training interactions"
    if key == "user":
        return f"{value:+.3f}"
    return str(value)  # an aligner's per-modality scores, a note
