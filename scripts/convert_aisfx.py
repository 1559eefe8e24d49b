"""Convert the aiSFX checkpoint from the PyPI wheel into ``assets/aisfx/``.

aiSFX (Ma & Lerch, ISMIR 2022) ships its trained weights inside the ``aisfx==0.1.2``
wheel, but the package pins numpy==1.23 and librosa==0.9.2, so mmrec cannot depend on
it. This script downloads the wheel (no dependencies, nothing installed), loads the
pickled checkpoint with torch's weights-only unpickler, keeps the embedding network's
tensors and drops the nine dataset classifier heads, and writes:

- ``assets/aisfx/aisfx.safetensors``  the embedding network, keys as in the package
  minus the ``embedding_net.`` prefix (e.g. ``conv_block1.conv1.weight``)
- ``assets/aisfx/LICENSE``            the wheel's licence file (CC BY 4.0), verbatim
- ``assets/aisfx/ATTRIBUTION.md``     who made it, where from, what we changed

Run from anywhere: ``python scripts/convert_aisfx.py`` (needs torch, safetensors, pip).
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aisfx"
VERSION = "0.1.2"
CHECKPOINT = "aisfx/models/checkpoint.pth"
LICENSE = f"aisfx-{VERSION}.dist-info/licenses/LICENSE"
PREFIX = "embedding_net."
OUT_DIR = Path(__file__).resolve().parents[1] / "assets" / "aisfx"

ATTRIBUTION = """\
# aiSFX embedding network

The weights in `aisfx.safetensors` are the embedding network of **aiSFX**
(model "X-Sequential-CE"), from:

> Alison Bernice Ma and Alexander Lerch. *Representation Learning for the Automatic
> Indexing of Sound Effects Libraries.* Proceedings of the 23rd International Society
> for Music Information Retrieval Conference (ISMIR), 2022, pp. 866-875.

- Source: the PyPI package `aisfx=={version}` (wheel sha256 `{sha256}`),
  file `{checkpoint}`; project repository alisonbma/aisfx on GitHub.
- Licence: Creative Commons Attribution 4.0 International (CC BY 4.0), copyright (c)
  2022 A.B. Ma and A. Lerch; the full text is in `LICENSE` beside this file, copied
  unchanged from the wheel.

## Changes made by mmrec

- Converted the PyTorch pickle checkpoint to safetensors (float32 tensors, values
  unchanged) by `scripts/convert_aisfx.py`.
- Kept only the embedding network (`embedding_net.*`, with that prefix removed) and
  dropped the nine per-dataset classifier heads (`fc.*`).
- mmrec runs these weights with its own reimplementation of the network and of the
  package's default (essentia) spectrogram preprocessing, in `mmrec/encoders/aisfx.py`.
"""


def download_wheel(dest: Path) -> Path:
    """Fetch the wheel alone (no dependencies) with the running interpreter's pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--dest", str(dest), f"{PACKAGE}=={VERSION}"],
        check=True,
    )
    wheels = sorted(dest.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one {PACKAGE} {VERSION} wheel in {dest}, found {wheels}")
    return wheels[0]


def load_checkpoint(raw: bytes) -> dict:
    """Unpickle with torch's weights-only loader: no arbitrary code from the wheel runs.

    The checkpoint is a ``(state_dict, dataset_dict)`` tuple saved with numpy scalars in
    it, so the numpy scalar reconstructor and dtype classes must be allow-listed.
    """
    import numpy as np
    import torch

    # The pickle names numpy 1.x's ``numpy.core.multiarray.scalar``; numpy 2 moved it to
    # ``numpy._core``, so it is allow-listed under the name the pickle uses.
    core = getattr(np, "_core", None) or np.core
    allowed: list = [(core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.int64, np.int32, np.float64, np.float32)]
    with torch.serialization.safe_globals(allowed):
        state, _datasets = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return state


def embedding_tensors(state: dict) -> dict:
    """The embedding network's tensors, prefix removed; refuses a checkpoint it doesn't know."""
    kept = {k[len(PREFIX):]: v.contiguous() for k, v in state.items() if k.startswith(PREFIX)}
    dropped = [k for k in state if not k.startswith(PREFIX)]
    if not kept or any(not k.startswith("fc.") for k in dropped):
        raise SystemExit(f"unexpected checkpoint layout: kept {len(kept)}, dropped {dropped[:5]}")
    return kept


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main() -> None:
    from safetensors.torch import save

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp))
        sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        with zipfile.ZipFile(wheel) as zf:
            state = load_checkpoint(zf.read(CHECKPOINT))
            licence = zf.read(LICENSE)
    tensors = embedding_tensors(state)
    metadata = {"source": f"{PACKAGE}=={VERSION}:{CHECKPOINT}", "wheel_sha256": sha256}
    write_atomic(OUT_DIR / "aisfx.safetensors", save(tensors, metadata=metadata))
    write_atomic(OUT_DIR / "LICENSE", licence)
    text = ATTRIBUTION.format(version=VERSION, sha256=sha256, checkpoint=CHECKPOINT)
    write_atomic(OUT_DIR / "ATTRIBUTION.md", text.encode())
    size = (OUT_DIR / "aisfx.safetensors").stat().st_size
    print(f"wrote {len(tensors)} tensors, {size / 1e6:.1f} MB, to {OUT_DIR}")


if __name__ == "__main__":
    main()
