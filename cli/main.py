"""``mmrec``: the Typer app. This module only composes the per-command modules."""
from __future__ import annotations

import typer

from mmrec.cli import align, demo, encode, encoders, evaluate, recommend, serve, train, update
from mmrec.cli._common import DEBUG_HELP, Command
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
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = {"debug": debug}


for name, command in (
    ("encode", encode.encode),
    ("encoders", encoders.encoders),
    ("align", align.align),
    ("train", train.train),
    ("recommend", recommend.recommend),
    ("evaluate", evaluate.evaluate),
    ("update", update.update),
    ("demo", demo.demo),
    ("serve", serve.serve),
):
    app.command(name, cls=Command)(command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
