"""The contrastive loss, the temperature, the masks and early stopping, on hand-made tensors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmrec.alignment.config import LOGIT_SCALE_INIT, AlignConfig
from mmrec.alignment.heads import HeadSet, load_heads, save_heads
from mmrec.alignment.losses import info_nce, multimodal_info_nce
from mmrec.alignment.train import TrainData, fit, validation_score
from mmrec.enums import Pivot


def _unit(n, d, seed=0):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=-1)


def test_perfect_pairs_give_near_zero_loss_and_shuffled_pairs_a_high_one():
    a = torch.eye(16)  # orthogonal: every wrong pair scores 0, every right one 1
    scale = torch.tensor(100.0)
    assert float(info_nce(a, a.clone(), scale)) < 1e-6
    shuffled = a[torch.roll(torch.arange(16), 1)]
    assert float(info_nce(a, shuffled, scale)) > 50  # the right pair scores 100 below a wrong one
    # with no signal at all the loss is log(batch): chance
    assert float(info_nce(a, a, torch.tensor(0.0))) == pytest.approx(math.log(16), rel=1e-5)


def test_loss_is_symmetric_in_its_two_sides():
    a, b = _unit(8, 5, 1), _unit(8, 5, 2)
    scale = torch.tensor(10.0)
    assert float(info_nce(a, b, scale)) == pytest.approx(float(info_nce(b, a, scale)))


def test_absent_modalities_are_masked_out_not_matched():
    text, image, audio = _unit(6, 4, 1), _unit(6, 4, 2), _unit(6, 4, 3)
    present = {"text": torch.ones(6, dtype=torch.bool),
               "image": torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool),
               "audio": torch.tensor([1, 0, 1, 0, 0, 0], dtype=torch.bool)}
    scale = torch.tensor(14.0)
    loss = multimodal_info_nce({"text": text, "image": image, "audio": audio}, present, scale)
    # by hand: each pair over the items that have both, weighted by how many do
    ti, ta, ia = present["image"], present["audio"], present["image"] & present["audio"]
    expected = (4 * info_nce(image[ti], text[ti], scale) + 2 * info_nce(audio[ta], text[ta], scale)
                + 2 * info_nce(audio[ia], image[ia], scale)) / 8
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # what sits in an absent row changes nothing, and gets no gradient
    junk = image.clone().requires_grad_(True)
    with torch.no_grad():
        junk[4:] = 1000.0
    again = multimodal_info_nce({"text": text, "image": junk, "audio": audio}, present, scale)
    assert float(again.detach()) == pytest.approx(float(loss), rel=1e-6)
    again.backward()
    assert torch.all(junk.grad[4:] == 0) and torch.any(junk.grad[:4] != 0)


def test_nothing_to_contrast_gives_none():
    one = {"text": torch.tensor([True, False]), "image": torch.tensor([True, False])}
    assert multimodal_info_nce({"text": _unit(2, 3), "image": _unit(2, 3, 1)}, one,
                               torch.tensor(1.0)) is None


def test_temperature_starts_at_007_and_the_scale_is_capped_at_100(tmp_path):
    heads = HeadSet({"text": 4, "image": 6}, 4, "linear", 8, Pivot.TEXT)
    assert float(heads.net.logit_scale.detach()) == pytest.approx(LOGIT_SCALE_INIT)
    assert heads.temperature() == pytest.approx(0.07, rel=1e-5)
    with torch.no_grad():
        heads.net.logit_scale.fill_(10.0)  # e^10 >> 100
    assert float(heads.scale().detach()) == pytest.approx(100.0)
    heads.clamp_()
    assert float(heads.net.logit_scale.detach()) == pytest.approx(math.log(100.0))
    # text is the pivot: it passes through unchanged (normalised); images get a head
    assert "text" not in heads.net.heads and "image" in heads.net.heads
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0]])
    assert torch.allclose(heads("text", x), torch.tensor([[0.6, 0.8, 0.0, 0.0]]))
    save_heads(heads, tmp_path)
    again = load_heads(tmp_path)
    assert again.architecture() == heads.architecture()
    y = np.ones((2, 6), np.float32)
    np.testing.assert_array_equal(again.project("image", y), heads.project("image", y))


def _mapping_data(n_train=120, n_val=60, train_perm=False, seed=0):
    """Images are a fixed rotation of their texts; with ``train_perm`` the training
    pairs are wired to the wrong texts (the val pairs stay right)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    text = rng.standard_normal((n, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.standard_normal((8, 8)))[0].astype(np.float32)
    image = text @ rotation
    if train_perm:
        image[:n_train] = image[rng.permutation(n_train)]
    masks = {"text": np.ones(n, bool), "image": np.ones(n, bool)}
    return TrainData({"text": text, "image": image}, masks, np.arange(n_train),
                     np.arange(n_train, n)), rotation


def test_early_stopping_keeps_the_best_step_when_training_hurts():
    data, rotation = _mapping_data(train_perm=True)
    heads = HeadSet({"text": 8, "image": 8}, 8, "linear", 8, Pivot.TEXT)
    with torch.no_grad():  # start from the exact inverse rotation: perfect on validation
        heads.net.heads["image"].weight.copy_(torch.from_numpy(rotation))
        heads.net.heads["image"].bias.zero_()
    start = validation_score(heads, data)
    config = AlignConfig(steps=400, lr=0.05, batch_size=32, eval_every=5, patience=4)
    result = fit(heads, data, config, torch.device("cpu"))
    assert result.best_step == 0 and result.stopped_early and result.steps == 20
    assert min(h["val_mrr"] for h in result.history[1:]) < start[1]  # training did hurt
    np.testing.assert_allclose(heads.net.heads["image"].weight.detach().numpy(), rotation)
    assert validation_score(heads, data) == start


def test_early_stopping_restores_the_best_of_several_checks():
    data, _ = _mapping_data()
    heads = HeadSet({"text": 8, "image": 8}, 8, "linear", 8, Pivot.TEXT)
    config = AlignConfig(steps=300, lr=0.02, batch_size=32, eval_every=10, patience=5)
    result = fit(heads, data, config, torch.device("cpu"))
    best = max(result.history, key=lambda h: (h["val_r10"], h["val_mrr"]))
    assert result.best_step == best["step"] > 0
    r10, mrr = validation_score(heads, data)
    assert r10 == pytest.approx(best["val_r10"]) and mrr == pytest.approx(best["val_mrr"], abs=1e-6)
    assert r10 > 0.9  # a learnable mapping is learned
