"""``mmrec``: the Typer app. This module only composes the per-command modules."""
from __future__ import annotations

import typer

from mmrec.cli import align, demo, encode, encoders, evaluate, recommend, train, update
from mmrec.version import __version__

app = typer.Typer(
    name="mmrec",
    help="Multimodal embeddings and recommendations over text, images and audio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmrec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = {"debug": debug}


app.command("encode")(encode.encode)
app.command("encoders")(encoders.encoders)
app.command("align")(align.align)
app.command("train")(train.train)
app.command("recommend")(recommend.recommend)
app.command("evaluate")(evaluate.evaluate)
app.command("update")(update.update)
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
