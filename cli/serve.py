"""``mmrec serve DIR [DIR ...]``: a resident HTTP service and web page over aligners and models."""
from __future__ import annotations

from pathlib import Path

import typer

from mmrec.cli._common import handle_errors, stderr


@handle_errors
def serve(
    paths: list[Path] = typer.Argument(..., help="Aligner (search) and model (recommend) directories."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; other than loopback needs --token."),
    port: int = typer.Option(8000, help="Port to listen on."),
    token: str = typer.Option(None, envvar="MMREC_TOKEN", show_envvar=True,
                              help="Bearer token every request must carry (Authorization: Bearer ...)."),
    cors: list[str] = typer.Option(None, "--cors", help="Allow browser calls from this origin; repeat for more."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", min=0.001, help="Largest request body, MiB."),
    max_pixels: int = typer.Option(16_000_000, min=1, help="Largest uploaded image, in pixels."),
    feedback_dir: Path = typer.Option(None, help="Where POST /feedback journals go (default: MODEL.feedback/ beside each model)."),
    feedback_batch: int = typer.Option(100, min=1, help="Fold feedback into the model once this many events wait..."),
    feedback_seconds: float = typer.Option(60.0, min=0.0, help="...or once the oldest has waited this many seconds."),
) -> None:
    """Serve search and recommendations over HTTP, with a web page at /."""
    from mmrec.serve.app import serve as run
    from mmrec.serve.config import MiB, ServeConfig

    config = ServeConfig(paths=list(paths), host=host, port=port, token=token, cors=list(cors or []),
                         max_body=int(max_body_mb * MiB), max_pixels=max_pixels,
                         feedback_dir=feedback_dir, feedback_batch=feedback_batch,
                         feedback_seconds=feedback_seconds)
    config.check()  # before loading anything: an unsafe bind fails at once
    stderr().print(f"mmrec: serving {', '.join(p.name for p in paths)} on http://{host}:{port}/")
    run(config)
