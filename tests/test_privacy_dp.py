"""DP-SGD two-tower: one gradient per user, the spent epsilon reported, bad options refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_privacy import world  # noqa: F401  (the store and interactions of 12 users)
from test_recsys_cli import invoke, ok, one_line_error

from mmrec.recsys.private import _user_rows

pytest.importorskip("opacus", reason="DP-SGD needs opacus (a declared dependency)")


def test_user_rows_use_only_the_users_own_items():
    own = np.array([3, 7, 9, 11, 20])
    width = [2, 40, 10, 2]
    rows, masks = _user_rows(own, width, 25, np.random.default_rng(0))
    targets, negatives, history, recent = np.split(rows, np.cumsum(width)[:-1])
    t_mask, n_mask, h_mask, r_mask = np.split(masks, np.cumsum(width)[:-1])
    used_targets = set(targets[t_mask > 0])
    used_history = set(history[h_mask > 0])
    assert len(used_targets) == 2 and used_targets <= set(own)
    assert used_history == set(own) - used_targets  # the targets never echo in the history
    assert set(recent[r_mask > 0]) <= used_history
    assert not set(negatives[n_mask > 0]) & set(own)  # own positives are never negatives
    assert (n_mask == 0).sum() == np.isin(negatives, own).sum()


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_per_user_gradients_are_each_users_own(world):  # noqa: F811
    """What opacus clips is, for each user, the gradient of that user's loss alone."""
    import torch

    from mmrec.catalog import read_interactions
    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.data import store_content
    from mmrec.recsys.private import PrivateTwoTowerTrainer
    from mmrec.recsys.train import _data
    from mmrec.store import Store

    content = store_content(Store.open(world.store))
    cfg = TrainConfig(epochs=1, batch_size=4, dp_epsilon=8.0, id_dropout=0.0).resolved()
    data = _data(content.ids, read_interactions(world.inter, content.ids), cfg)
    trainer = PrivateTwoTowerTrainer(data, content.matrix, cfg, torch.device("cpu"))
    trainer.rng = np.random.default_rng(1)
    batch = trainer._batch(np.array([0, 1, 2]))
    trainer.module(*batch).mean().backward()  # the trainer's reduction: opacus rescales by the batch
    net = trainer.module._module.net
    params = [net.adapter[0].weight, net.item_id.weight, net.user_id.weight, net.history.weight]
    per_user = [p.grad_sample.clone() for p in params]
    trainer.module.disable_hooks()
    for n in range(3):
        one = (batch[0][n : n + 1], batch[1][n : n + 1], batch[2][n : n + 1], batch[3])
        grads = torch.autograd.grad(trainer.module._module(*one).sum(), params)
        for mine, grad in zip(per_user, grads, strict=True):
            torch.testing.assert_close(mine[n], grad, rtol=1e-4, atol=1e-6)


def test_train_dp_reports_the_epsilon_spent(world, tmp_path):  # noqa: F811
    out = tmp_path / "dp"
    report = json.loads(ok(invoke("train", "--store", world.store, "--interactions", world.inter,
                                  "--out", out, "--epochs", "2", "--batch-size", "4",
                                  "--dp-epsilon", "2", "--json")).stdout)
    dp = report["privacy"]
    assert 1.5 < dp["epsilon"] <= 2.0 + 1e-3 and dp["delta"] == pytest.approx(1e-5)
    assert dp["unit"] == "user" and dp["noise_multiplier"] > 0 and dp["steps"] >= 2
    assert report["best_epoch"] == report["epochs"] == 2  # the last epoch is released
    config = json.loads((out / "config.json").read_text())
    assert config["privacy"]["dp"] == dp and config["config"]["dp_epsilon"] == 2.0
    ok(invoke("recommend", out, "--user", "person.1@example.org", "--json"))


@pytest.mark.parametrize(("extra", "needle"), [
    (["--model", "bpr", "--dp-epsilon", "1"], "not bpr"),
    (["--dp-epsilon", "0"], "must be positive"),
    (["--dp-delta", "1e-6"], "needs --dp-epsilon"),
    (["--dp-epsilon", "1", "--dp-delta", "0.5"], "not below 1/users"),
])
def test_bad_dp_options_are_one_line(world, tmp_path, extra, needle):  # noqa: F811
    result = invoke("train", "--store", world.store, "--interactions", world.inter,
                    "--out", tmp_path / "m", "--epochs", "1", *extra)
    one_line_error(result, needle)
