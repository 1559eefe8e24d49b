"""``mmrec recommend DIR``: search an aligner or ask a trained model, through faiss."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.cli._common import DEVICE_HELP, handle_errors, print_json, split_list, stdout
from mmrec.query import Hit, Query
from mmrec.runtime import DeviceChoice


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
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Top-K items for a text/image/audio query, item(s), a user, or a history."""
    import mmrec

    query = Query(text=text, image=image, audio=audio, items=list(item or []), user=user,
                  history=split_list(history) or [], modality=modality, k=k,
                  exclude_seen=not include_seen, explain=explain, device=device.value)
    hits = mmrec.recommend(path, query)
    if as_json:
        print_json({"results": [h.as_dict() for h in hits]})
    else:
        render(hits, explain)


def render(hits: list[Hit], explain: bool) -> None:
    from rich.table import Table

    header = ["#", "id", "title", "score", "matched", *(["why"] if explain else [])]
    rows = []
    for rank, hit in enumerate(hits, start=1):
        why = []
        if explain and hit.explanation:
            why = ["; ".join(f"{k}: {v}" for k, v in hit.explanation.items())]
        rows.append([str(rank), hit.id, hit.title or "", f"{hit.score:.3f}", hit.matched or "", *why])
    # a model's hits match no modality and catalogs may have no titles: no empty columns
    keep = [i for i in range(len(header)) if not rows or any(i < len(row) and row[i] for row in rows)]
    table = Table(*(header[i] for i in keep), box=None)
    for row in rows:
        table.add_row(*(row[i] if i < len(row) else "" for i in keep))
    stdout().print(table)
