"""What a new user sees at the command line: help, metavars, --debug, summaries, tables."""
from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog
from mmrec.cli.main import app
from mmrec.errors import MMRecError

runner = CliRunner()


def _commands() -> dict:
    import typer.main

    return typer.main.get_command(app).commands


def _flat(text: str) -> str:
    return " ".join(text.split())  # help wraps at 80 columns


def test_root_help_shows_each_commands_whole_first_line():
    out = _flat(runner.invoke(app, ["--help"]).output)
    for name, command in _commands().items():
        first = _flat(command.help.split("\n\n")[0])
        assert f"{name} {first}" in out
    assert "..." not in out.split("Commands:")[1]


@pytest.mark.parametrize("name", list(_commands()))
def test_every_option_and_argument_has_a_readable_metavar(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    # Typer's own forms: `{catalog}`, `<path>`, `<list[str]>`, `<int range>`
    assert not re.findall(r"\{\w|<[a-z]", result.output), result.output
    assert "--debug" in result.output


def test_metavars_name_what_is_expected():
    out = runner.invoke(app, ["encode", "--help"]).output
    assert "Usage: mmrec encode [OPTIONS] CATALOG\n" in out
    for shown in ("-o, --out PATH", "--text-fields FIELDS", "--preset NAME",
                  "--device [auto|cpu|cuda|mps]", "--on-error [skip|fail]", "--batch-size INTEGER"):
        assert shown in out
    recommend = runner.invoke(app, ["recommend", "--help"]).output
    assert "--item TEXT" in recommend and "-k, --top-k INTEGER" in recommend
    evaluate = runner.invoke(app, ["evaluate", "--help"]).output
    assert "Usage: mmrec evaluate [OPTIONS] [retrieval|replay] DIR\n" in evaluate  # hidden 2nd arg unlisted


def test_preset_help_lists_the_shipped_presets():
    from mmrec.resources import asset, preset_names

    names = preset_names()
    assert names == sorted(p.stem for p in asset("presets").glob("*.json")) and "default" in names
    out = _flat(runner.invoke(app, ["encode", "--help"]).output)
    assert f"Encoder bundle (one encoder per modality): {', '.join(names)}." in out


@pytest.mark.parametrize("args", [
    ["encode", "nope.jsonl", "-o", "x"],
    ["align", "nope", "-o", "x"],
    ["train", "--store", "nope", "-i", "nope.csv", "-o", "x"],
    ["recommend", "nope", "--text", "hi"],
    ["evaluate", "nope"],
])
def test_debug_after_the_command_name_shows_the_traceback(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    for debug_args in (["--debug", *args], [*args, "--debug"]):
        result = runner.invoke(app, debug_args)
        assert isinstance(result.exception, MMRecError), result.output  # raised, not rendered
    plain = runner.invoke(app, args)
    assert plain.exit_code == 1 and plain.stderr.startswith("error: ")


def test_a_summary_never_says_on_dash(tmp_path):
    catalog = make_catalog(tmp_path / "cat", [{"id": "a", "title": "x"}])
    args = ["encode", str(catalog), "-o", str(tmp_path / "s"), *FAKE_OPTIONS]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and " on cpu in " in first.stdout
    again = runner.invoke(app, args)                       # nothing to encode: no device used
    assert again.exit_code == 0 and " on " not in again.stdout.splitlines()[0]
    assert json.loads(runner.invoke(app, [*args, "--json"]).stdout)["device"] is None


def test_a_models_recommendations_show_no_empty_columns(tmp_path):
    catalog = make_catalog(tmp_path / "cat", [{"id": f"i{i}", "title": f"Film {i}"} for i in range(6)])
    assert runner.invoke(app, ["encode", str(catalog), "-o", str(tmp_path / "s"),
                               *FAKE_OPTIONS]).exit_code == 0
    inter = tmp_path / "inter.csv"
    inter.write_text("user,item,timestamp\n" + "".join(
        f"u{u},i{(u + t) % 6},{t}\n" for u in range(4) for t in range(3)))
    trained = runner.invoke(app, ["train", "--store", str(tmp_path / "s"), "-i", str(inter),
                                  "-o", str(tmp_path / "m"), "--model", "pop"])
    assert trained.exit_code == 0, trained.output
    assert " on -" not in trained.stdout
    table = runner.invoke(app, ["recommend", str(tmp_path / "m"), "--user", "u0", "-k", "2"])
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0].split()
    assert header == ["#", "id", "title", "score"]  # no "matched": a model matches no modality
