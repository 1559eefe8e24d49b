"""Golden tests: the offline text and image encoders against upstream reference vectors.

The fixtures come from sentence-transformers' own encode() and the
efficientnet-lite-pytorch package's own model (scripts/make_golden.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrec.catalog import load_image
from mmrec.encoders.registry import create
from mmrec.resources import asset

pytestmark = pytest.mark.slow  # the real MiniLM and EfficientNet-Lite0 weights
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cpu():
    import torch

    return torch.device("cpu")


def test_minilm_matches_sentence_transformers(cpu):
    golden = np.load(FIXTURES / "minilm_golden.npz")
    encoder = create("builtin:minilm-l6-v2", "text")
    assert encoder.dim == 384
    encoder.load(cpu)
    vectors = encoder.encode(list(golden["texts"]), batch_size=2)
    cosines = (vectors * golden["vectors"]).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_efficientnet_matches_the_package_model(cpu):
    import torch

    golden = np.load(FIXTURES / "efficientnet_golden.npz")
    encoder = create("builtin:efficientnet-lite0", "image")
    assert encoder.dim == 1280
    encoder.load(cpu)
    images = [load_image(asset(f"demo/images/{name}")) for name in golden["images"]]
    vectors = encoder.encode(images, batch_size=3)
    cosines = (vectors * golden["vectors"]).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    with torch.inference_mode():
        _, logits = encoder.features_and_logits(images)
    np.testing.assert_allclose(logits.numpy(), golden["logits"], atol=2e-3)
    assert (logits.argmax(1).numpy() == golden["logits"].argmax(1)).all()


def test_logits_are_recoverable_from_stored_unit_vectors_and_norms(cpu):
    """What the align bridge relies on: fc(unit * norm) == the model's logits."""
    import torch

    encoder = create("builtin:efficientnet-lite0", "image")
    encoder.load(cpu)
    images = [load_image(asset("demo/images/cat.png"))]
    unit, norms = encoder.encode(images, return_norms=True)
    with torch.inference_mode():
        _, logits = encoder.features_and_logits(images)
        again = encoder.model._fc(torch.from_numpy(unit * norms[:, None]))
    np.testing.assert_allclose(again.numpy(), logits.numpy(), atol=1e-3)
