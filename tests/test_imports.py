"""`mmrec --help` must stay fast: no torch, transformers, open_clip, faiss or PIL."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "transformers", "open_clip", "faiss", "PIL", "torchaudio", "torchvision",
         "sentence_transformers", "matplotlib", "fastapi", "starlette", "uvicorn", "ray"]


def _loaded(code: str) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("loaded:"), out.stdout
    return [m for m in line.removeprefix("loaded:").split(",") if m]


def test_cli_import_loads_no_heavy_module():
    assert _loaded("import mmrec.cli.main") == []


def test_help_loads_no_heavy_module():
    code = ("from typer.testing import CliRunner\nfrom mmrec.cli.main import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "for c in ['encode', 'encoders', 'demo', 'train', 'align', 'serve']:\n"
            "    assert CliRunner().invoke(app, [c, '--help']).exit_code == 0")
    assert _loaded(code) == []


def test_listing_encoders_loads_no_heavy_module():
    assert _loaded("from mmrec.encoders.registry import list_encoders\nlist_encoders()") == []


def test_console_script_answers():
    result = subprocess.run(["mmrec", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("mmrec ")


def test_python_dash_m_mmrec_runs_the_same_app():
    result = subprocess.run([sys.executable, "-m", "mmrec", "--help"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ") and "encode" in result.stdout
    assert _loaded("import mmrec.__main__") == []  # as light as the console script
