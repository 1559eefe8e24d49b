"""GPU checks, run with `python -m pytest -m cuda` on a machine with CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrec.catalog import load_image
from mmrec.encoders.registry import create
from mmrec.resources import asset

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_auto_device_is_cuda():
    from mmrec.runtime import resolve_device

    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("name, modality", [("builtin:minilm-l6-v2", "text"),
                                            ("builtin:efficientnet-lite0", "image")])
def test_gpu_vectors_match_cpu(name, modality):
    inputs = (["a barking dog", "church bells", "rain on a roof"] if modality == "text" else
              [load_image(asset(f"demo/images/{n}.png")) for n in ("dog", "bell", "car")])
    out = {}
    for device in ("cpu", "cuda"):
        encoder = create(name, modality)
        encoder.load(torch.device(device))
        out[device] = encoder.encode(inputs)
    cosines = (out["cpu"] * out["cuda"]).sum(axis=1)
    assert cosines.min() > 0.99, cosines  # bf16 autocast on CUDA


def test_encode_cli_on_cuda(tmp_path):
    from mmrec.encoding import encode

    report = encode(asset("demo/catalog.jsonl"), tmp_path / "s", device="cuda")
    assert report.device.startswith("cuda")
    assert report.vectors["text"] == 38 and report.vectors["audio"] == 29
    from mmrec.store import Store

    ids, vecs = Store.open(tmp_path / "s").vectors("audio")
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-4)
