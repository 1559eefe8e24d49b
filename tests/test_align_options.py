"""`mmrec align` options: every default is AlignConfig's, every field has an option."""
from __future__ import annotations

import dataclasses
import enum
import json

import pytest
import typer
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, write_png
from mmrec.alignment.config import AlignConfig, parse_weights
from mmrec.cli.main import app
from mmrec.errors import ConfigError

runner = CliRunner()


def _align_params():
    command = typer.main.get_command(app).commands["align"]
    return {p.name: p for p in command.params}


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


def test_every_align_config_field_is_an_option_with_the_same_default():
    params = _align_params()
    for f in dataclasses.fields(AlignConfig):
        assert f.name in params, f"AlignConfig.{f.name} has no --{f.name.replace('_', '-')}"
        if f.default is not dataclasses.MISSING and f.name != "modalities":
            assert _plain(params[f.name].default) == _plain(f.default), f.name


def test_parse_weights():
    assert parse_weights("text=1, image=0.5") == {"text": 1.0, "image": 0.5}
    assert parse_weights(None) == {} and parse_weights("") == {}
    for bad, message in [("text", "MODALITY=WEIGHT"), ("text=heavy", "MODALITY=WEIGHT"),
                         ("smell=1", "--fusion must be one of text, image, audio")]:
        with pytest.raises(ConfigError, match=message):
            parse_weights(bad)


@pytest.fixture
def store(tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(10):
        write_png(tmp_path / "img" / f"{i}.png", (25 * i, 250 - 25 * i, (60 * i) % 256))
        rows.append({"id": f"i{i}", "title": f"thing {i}", "image": f"img/{i}.png"})
    out = tmp_path / "store"
    assert runner.invoke(app, ["encode", str(make_catalog(tmp_path, rows)), "--out", str(out),
                               *FAKE_OPTIONS]).exit_code == 0
    return out


def _align(store, out, *extra):
    return runner.invoke(app, ["align", str(store), "--out", str(out), "--steps", "3",
                               "--batch-size", "4", *extra])


def test_new_options_reach_the_saved_config(store, tmp_path):
    result = _align(store, tmp_path / "a", "--head", "mlp", "--hidden", "7", "--weight-decay",
                    "0.5", "--patience", "2", "--fusion", "text=1,image=0.25", "--precision",
                    "fp32")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    assert (config["hidden"], config["weight_decay"], config["patience"]) == (7, 0.5, 2)
    assert config["fusion"] == {"text": 1.0, "image": 0.25} and config["precision"] == "fp32"


def test_fusion_weights_change_the_fused_vectors(store, tmp_path):
    import numpy as np

    for name, fusion in [("even", "text=1,image=1"), ("text", "text=1,image=0")]:
        assert _align(store, tmp_path / name, "--fusion", fusion).exit_code == 0
    text_only = np.load(tmp_path / "text" / "vectors" / "fused.npy")
    np.testing.assert_allclose(text_only, np.load(tmp_path / "text" / "vectors" / "text.npy"),
                               atol=1e-6)
    assert not np.allclose(np.load(tmp_path / "even" / "vectors" / "fused.npy"), text_only)


@pytest.mark.parametrize("args, message", [
    (["--fusion", "text:1"], "--fusion takes MODALITY=WEIGHT pairs"),
    (["--fusion", "text=-1"], "fusion weights must be >= 0"),
])
def test_bad_new_options_fail_in_one_line(store, tmp_path, args, message):
    result = _align(store, tmp_path / "a", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "a").exists()


def test_align_steps_return_values_and_can_be_rerun(store, tmp_path):
    """plan -> train -> projection -> write: each takes what it needs, nothing is hidden."""
    import numpy as np

    from mmrec.alignment import pipeline
    from mmrec.progress import NullProgress
    from mmrec.runtime import resolve_device
    from mmrec.store import Store

    config = AlignConfig(steps=3, batch_size=4, device="cpu").validate()
    decided = pipeline.plan(Store.open(store), config, NullProgress())
    with pytest.raises(dataclasses.FrozenInstanceError):
        decided.dim = 3
    trained = pipeline.train(decided, resolve_device("cpu"), NullProgress())
    assert trained.fit.steps == 3 and decided.modalities == ["text", "image"]
    chosen = pipeline.projection(decided, trained)
    first = pipeline.write(decided, tmp_path / "a", trained, chosen)
    again = pipeline.write(decided, tmp_path / "b", trained, chosen)
    assert first.as_dict() | {"aligner": "", "seconds": 0} == again.as_dict() | {"aligner": "", "seconds": 0}
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "vectors" / "fused.npy"),
                                  np.load(tmp_path / "b" / "vectors" / "fused.npy"))


def test_bf16_training_on_cpu_runs_and_keeps_float32_heads(store, tmp_path):
    result = _align(store, tmp_path / "a", "--precision", "bf16", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["steps"] == 3 and report["temperature"] > 0
    from safetensors.numpy import load_file

    assert {str(v.dtype) for v in load_file(str(tmp_path / "a" / "heads.safetensors")).values()} == {"float32"}
