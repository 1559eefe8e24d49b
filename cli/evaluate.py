"""``mmrec evaluate [retrieval] DIR``: recommendation metrics, or cross-modal retrieval."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmrec.cli._common import handle_errors, print_json, stdout


@handle_errors
def evaluate(
    target: str = typer.Argument(..., metavar="[retrieval|replay] DIR",
                                 help="A model or aligner directory; `retrieval DIR` for an aligner's cross-modal retrieval; `replay MODEL --log FILE` for exploration policies."),
    path: Path = typer.Argument(None, hidden=True),
    test: Path = typer.Option(None, "--test", help="Evaluate a model on the interactions in this file (the users' later behaviour) instead of its own split's test part."),
    log: Path = typer.Option(None, "--log", help="replay: a time-ordered ratings log (user,item,rating,timestamp)."),
    threshold: float = typer.Option(4.0, "--threshold", help="replay: a rating at least this is a reward of 1."),
    candidates: int = typer.Option(20, "--candidates", help="replay: arms per event (the logged item and random others)."),
    seed: int = typer.Option(0, "--seed", help="replay: seed of the candidate sets and the policies' draws."),
    key: Path = typer.Option(None, "--key", help="replay: key file of an anonymised model (its log has raw user ids)."),
    plot: Path = typer.Option(None, help="Also draw the metric curves into this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Recall/NDCG/Hit/Precision/MRR/coverage@K on held-out data, or retrieval R@K."""
    import mmrec
    from mmrec.errors import ConfigError

    what = "auto"
    if target in ("retrieval", "replay"):
        if path is None:
            raise ConfigError(f"usage: mmrec evaluate {target} "
                              + ("ALIGNER" if target == "retrieval" else "MODEL --log FILE"))
        what, directory = target, path
    elif path is not None:
        raise ConfigError(f"unexpected argument {str(path)!r}; usage: mmrec evaluate [retrieval|replay] DIR")
    else:
        directory = Path(target)
    if (what == "replay") != (log is not None):
        raise ConfigError("--log goes with `evaluate replay MODEL --log FILE`")
    if test is not None and what in ("retrieval", "replay"):
        raise ConfigError(f"--test evaluates a model on a file of interactions, not {what}")
    options: dict[str, object] = {"test": test} if test is not None else {}
    if what == "replay":
        if plot is not None:
            raise ConfigError("--plot draws metric curves: replay has none")
        options = {"log": log, "threshold": threshold, "candidates": candidates, "seed": seed, "key": key}
    result = mmrec.evaluate(directory, what=what, **options)
    if plot is not None:
        from mmrec.plots import plot_metrics

        plot_metrics(result, plot)
    if as_json:
        print_json(result)
    else:
        render(result)


def render(result: dict[str, Any]) -> None:
    """Rows of nested results (per split, per modality pair) as one table each."""
    from rich.table import Table

    console = stdout()
    flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in result.items() if isinstance(v, dict)}
    if flat:
        table = Table("metric", "value", box=None)
        for key, value in flat.items():
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        console.print(table)
    if nested:
        columns = list(dict.fromkeys(c for v in nested.values() for c in v))
        table = Table("", *columns, box=None)
        for key, values in nested.items():
            table.add_row(key, *(_cell(values.get(c)) for c in columns))
        console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
