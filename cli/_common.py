"""What every command shares: error rendering, progress on stderr, JSON on stdout."""
from __future__ import annotations

import enum
import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand

from mmrec.errors import MMRecError

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_HELP = "auto (cuda > mps > cpu), cpu, cuda or mps"
DEBUG_HELP = "Show tracebacks instead of one-line errors."
_CTX = "mmrec_ctx"
_DEBUG = "mmrec_debug"


# markup=False: titles, ids and paths are user data, and "[/x]" in one must print as is
# rather than be parsed as Rich markup (or crash the renderer).
def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def stdout() -> Console:
    console = Console(highlight=False, soft_wrap=True, markup=False)
    if not console.is_terminal:  # piped output: never truncate ids or names to 80 columns
        console.width = 240
    return console


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    from rich.text import Text

    err = stderr()
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    if hint:
        err.print(Text(f"hint: {hint}", style="dim"))
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """One red line (and a hint) on stderr, exit 1; the traceback only with --debug.

    The wrapper asks Typer for the context through an extra ``typer.Context``
    parameter (the root callback stores ``--debug`` in it), so it needs no global.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.pop(_CTX, None)
        root = ctx.find_root() if ctx is not None else None
        debug = bool(root is not None and isinstance(root.obj, dict) and root.obj.get("debug"))
        debug = kwargs.pop(_DEBUG, False) or debug
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MMRecError as exc:
            if debug:
                raise
            raise fail(str(exc), exc.hint) from None
        except KeyboardInterrupt:
            raise fail("interrupted; run the same command again to resume", code=130) from None
        except OSError as exc:  # the file system said no: not a bug, say what and where
            if debug:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise fail(f"{exc.strerror or type(exc).__name__}{where}") from None
        except Exception as exc:  # a bug: still one line, unless the user asks for more
            if debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise fail(f"internal error: {type(exc).__name__}: {first}",
                       "run again with `mmrec --debug ...` for the traceback") from None

    signature = inspect.signature(fn)
    extra = [inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
             # after the command name too: `mmrec encode ... --debug` as well as `mmrec --debug encode`
             inspect.Parameter(_DEBUG, inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                               default=typer.Option(False, "--debug", help=DEBUG_HELP))]
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    wrapper.__annotations__ = {**fn.__annotations__, _CTX: typer.Context, _DEBUG: bool}
    return wrapper  # type: ignore[return-value]


def print_read(console: Console, read: dict[str, Any], unknown_where: str) -> None:
    """What reading an interactions file skipped (``Interactions.summary()``): items
    ``unknown_where`` says the content lacks, ratings below the minimum, duplicates,
    and the first ten bad rows."""
    if read["unknown_items"]:
        console.print(f"skipped {read['unknown_items']} interactions on items {unknown_where} "
                      f"(e.g. {', '.join(read['unknown_examples'])})")
    for label in ("below_min_rating", "duplicates"):
        if read[label]:
            console.print(f"skipped {read[label]} {label.replace('_', ' ')}")
    for problem in read["problems"][:10]:
        console.print(f"  skipped row {problem['row']}: {problem['reason']}")


def on_device(device: str | None) -> str:
    """" on cuda:0" for a summary line, or nothing when no device was used."""
    return f" on {device}" if device and device != "-" else ""


def _metavar(annotation: Any) -> str:
    """Click's classic metavars, from the parameter's Python type."""
    if typing.get_origin(annotation) is list:  # a repeatable option: one value's metavar
        return _metavar(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "[" + "|".join(str(m.value) for m in annotation) + "]"
    names = {Path: "PATH", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}
    return names.get(annotation, "TEXT")


class Command(TyperCommand):
    """Every mmrec command: its whole first docstring line in `mmrec --help`, plain
    metavars (`CATALOG`, `--out PATH`) where recent Typer prints `{catalog}` and
    `<list[str]>`. (Click itself comes vendored inside recent Typer: nothing here
    imports it, only its objects' methods are called.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.help and not self.short_help:  # Click would cut it to fit 80 columns
            self.short_help = inspect.cleandoc(self.help).split("\n\n")[0].replace("\n", " ")
        for param in self.params:
            if param.metavar is None and not getattr(param, "is_flag", False):
                annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
                is_argument = param.param_type_name == "argument"
                param.metavar = (param.name or "").upper() if is_argument else _metavar(annotation)

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument" and not getattr(param, "hidden", False):
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
        return pieces

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":  # the name alone, not "NAME <path>"
                arguments.append((param.metavar, record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


class RichProgress:
    """Bars on stderr while it is a terminal; silent otherwise (CI, pipes)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = stderr()
        self.enabled = self.console.is_terminal
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                            console=self.console, transient=True, disable=not self.enabled)

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def task(self, description: str, total: int | None) -> Callable[..., None]:
        task_id = self.bar.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: Any) -> None:
            info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in fields.items())
            self.bar.update(task_id, advance=n, **({"info": info} if fields else {}))

        return advance

    def log(self, message: str) -> None:
        if self.enabled:
            self.bar.console.print(message, markup=False)
