"""``mmrec demo``: the offline default end to end on the catalog shipped with mmrec."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmrec.cli._common import DEVICE_HELP, RichProgress, handle_errors, print_json, stdout
from mmrec.cli.recommend import describe_items
from mmrec.enums import DeviceChoice


@handle_errors
def demo(
    out: Path = typer.Option(None, "--out", "-o", help="Directory for the demo's store, aligner and model (default: $MMREC_HOME/demo)."),
    items: int = typer.Option(8, min=1, help="How many items' neighbours to show."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Encode, align and search the small real catalog shipped with mmrec."""
    from mmrec import demo as lib

    with RichProgress() as progress:
        result = lib.run(out, device=device.value, progress=progress)
    if as_json:
        print_json({**result, "encode": result["encode"].as_dict(),
                    "align": result["align"].as_dict(), "train": result["train"].as_dict(),
                    "recommend": {**result["recommend"],
                                  "results": [h.as_dict() for h in result["recommend"]["results"]]}})
        return
    render(result, items)


def render(result: dict[str, Any], items: int) -> None:
    from rich.table import Table

    console, titles = stdout(), result["titles"]
    enc, ali = result["encode"], result["align"]
    done = ", ".join(f"{m}: {n}" for m, n in enc.vectors.items())
    console.print(f"1. encoded the bundled catalog into {enc.store}: {enc.items} items ({done}), "
                  f"{sum(enc.encoded.values())} newly encoded in {enc.seconds:.1f}s")
    near = result["neighbours"]
    table = Table("item", *(f"nearest by {m}" for m in near), box=None)
    for item_id in list(titles)[:items]:
        cells = [", ".join(titles[h] for h, _ in near[m].get(item_id, [])[:2]) or "-" for m in near]
        table.add_row(titles[item_id], *cells)
    console.print(table)
    console.print(f"\n2. aligned {', '.join(ali.modalities)} into the {ali.pivot} space "
                  f"({ali.dim}-d) from the shipped heads, {ali.steps} steps in {ali.seconds:.1f}s: "
                  f"{ali.aligner}")
    table = Table("text query", "pictures found", "sounds found", box=None)
    for query, found in result["search"].items():
        table.add_row(query, *(", ".join(f"{titles[i]} {s:.2f}" for i, s in found.get(m, [])) or "-"
                               for m in ("image", "audio")))
    console.print(table)

    tr, ev, rec = result["train"], result["evaluate"], result["recommend"]
    console.print(f"\n3. trained a {tr.model} recommender on {tr.interactions['train']} synthetic "
                  f"interactions of {tr.users} users ({tr.split} split) in {tr.seconds:.1f}s: "
                  f"test recall@10 {ev['recall@10']:.3f}, ndcg@10 {ev['ndcg@10']:.3f}")
    table = Table(f"for {rec['user']}", "score", "why (history items that pulled it up or down)",
                  box=None)
    for hit in rec["results"]:
        table.add_row(hit.title or hit.id, f"{hit.score:.3f}",
                      describe_items((hit.explanation or {}).get("history", [])))
    console.print(table)
