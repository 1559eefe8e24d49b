"""A twotower step costs what its batch costs: the item tower sees the batch's rows,
never the catalog, however large the catalog grows."""
from __future__ import annotations

import numpy as np
import pytest

from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.splits import make_split
from mmrec.recsys.twotower import TwoTowerTrainer


def _data(n_items: int) -> Data:
    rng = np.random.default_rng(0)
    pairs = np.unique(np.stack([np.repeat(np.arange(200), 10), rng.integers(0, 500, 2000)], 1), axis=0)
    users, items = pairs[:, 0], pairs[:, 1]  # the same 500 items are used, whatever n_items
    times = np.arange(len(users), dtype=np.float64)
    split = make_split("temporal", users, items, times)
    return Data([f"i{n}" for n in range(n_items)], [f"u{n}" for n in range(200)], users, items,
                times, split)


def _rows_per_step(n_items: int, **options) -> list[int]:
    import torch

    data = _data(n_items)
    content = np.random.default_rng(1).standard_normal((n_items, 16)).astype(np.float32)
    cfg = TrainConfig(epochs=1, batch_size=64, **options).resolved()
    trainer = TwoTowerTrainer(data, content, cfg, torch.device("cpu"))
    seen: list[int] = []
    trainer.net.adapter.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    trainer.epoch(np.random.default_rng(0))
    assert np.isfinite(trainer.export().items).all()
    return seen


@pytest.mark.parametrize("options", [{}, {"negatives": 32, "hard_negatives": 4}])
def test_a_step_touches_its_batch_rows_not_the_catalog(options):
    bound = 64 + 32 + 64 * 10 + 64 * 4  # batch items, negatives, histories, hard negatives
    small, large = _rows_per_step(1_000, **options), _rows_per_step(20_000, **options)
    steps = [n for n in small if n < 1_000]  # the others are the export's chunked passes
    big = [n for n in large if n < 20_000]
    assert steps and len(big) == len(steps) and max(steps + big) <= bound


def _epoch_numpy_peak(n_items: int) -> int:
    """The most numpy memory an epoch's steps hold at once beyond what was there before
    (numpy reports its buffers to tracemalloc; torch's are not traced)."""
    import tracemalloc

    import torch

    data = _data(n_items)
    content = np.random.default_rng(1).standard_normal((n_items, 4)).astype(np.float32)
    trainer = TwoTowerTrainer(data, content, TrainConfig(epochs=1, batch_size=64, dim=8).resolved(),
                              torch.device("cpu"))
    tracemalloc.start()
    try:
        trainer.epoch(np.random.default_rng(0))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_step_allocates_for_its_batch_not_for_the_catalog():
    """Same interactions, a catalog 25x larger: a step's numpy temporaries stay the
    same size (an items-long array per step, such as a row -> place map, is 8 MB at
    1M items and grows with the catalog)."""
    small, large = _epoch_numpy_peak(20_000), _epoch_numpy_peak(500_000)
    assert large < 1.5 * small + 100_000, (small, large)


def test_export_runs_the_item_tower_in_chunks(monkeypatch):
    import mmrec.recsys.twotower as twotower

    monkeypatch.setattr(twotower, "EXPORT_CHUNK", 4_000)
    seen = _rows_per_step(10_000)
    assert max(seen) == 4_000 and seen[-3:] == [4_000, 4_000, 2_000]


def test_steps_run_on_one_cpu_thread_and_repeat_exactly():
    """Multi-threaded reductions made the same seeded demo training stop at epoch 89 or
    136 from run to run: the step loop runs on one CPU thread (restored afterwards), and
    two runs from the same seed end with identical weights."""
    import torch

    def run() -> tuple[list[int], np.ndarray]:
        torch.manual_seed(0)
        data = _data(1_000)
        content = np.random.default_rng(1).standard_normal((1_000, 16)).astype(np.float32)
        trainer = TwoTowerTrainer(data, content, TrainConfig(epochs=1, batch_size=64).resolved(),
                                  torch.device("cpu"))
        threads: list[int] = []
        trainer.net.adapter.register_forward_hook(
            lambda module, args, out: threads.append(torch.get_num_threads()))
        trainer.epoch(np.random.default_rng(0))
        return threads, trainer.export().items

    before = torch.get_num_threads()
    threads, first = run()
    _, second = run()
    assert threads and set(threads[: len(threads) // 2]) == {1}  # the steps; export may differ
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(first, second)


def test_a_large_id_table_trains_only_the_rows_a_step_touches(monkeypatch):
    """Beyond SPARSE_ID_ROWS the item ids get sparse gradients and lazy updates: a
    step's gradient and update cover its rows, not the table; rows no step touched keep
    their value (zero), and training still moves the touched ones."""
    import torch

    import mmrec.recsys.twotower as twotower

    monkeypatch.setattr(twotower, "SPARSE_ID_ROWS", 5_000)
    data = _data(20_000)
    content = np.random.default_rng(1).standard_normal((20_000, 16)).astype(np.float32)
    trainer = TwoTowerTrainer(data, content, TrainConfig(epochs=1, batch_size=64).resolved(),
                              torch.device("cpu"))
    assert trainer.net.item_id.sparse and not trainer.net.user_id.sparse  # 200 users: dense
    touched: list[int] = []
    step = trainer._sparse_step
    monkeypatch.setattr(trainer, "_sparse_step", lambda: touched.append(
        trainer.net.item_id.weight.grad.coalesce()._nnz()) or step())
    loss = trainer.epoch(np.random.default_rng(0))
    assert np.isfinite(loss) and touched and max(touched) <= 64 + 64 * 10  # batch + histories
    ids = trainer.net.item_id.weight.detach().numpy()
    assert not ids[500:].any()  # items 500+ are in no interaction: never touched
    assert ids[:500].any()
    assert np.isfinite(trainer.export().items).all()


def test_a_small_id_table_keeps_the_dense_adamw():
    import torch

    trainer = TwoTowerTrainer(_data(1_000), np.zeros((1_000, 16), np.float32),
                              TrainConfig(epochs=1, batch_size=64).resolved(), torch.device("cpu"))
    assert not trainer.sparse and trainer.sparse_optimizer is None
    assert not trainer.net.item_id.sparse


def test_fine_tuning_a_large_catalog_model_keeps_dense_ids(monkeypatch):
    """update's fine-tuning steps its own AdamW over every parameter: its trainer must
    not have sparse id gradients, which AdamW refuses."""
    import torch

    import mmrec.recsys.twotower as twotower
    from mmrec.recsys.finetune import fine_tune

    monkeypatch.setattr(twotower, "SPARSE_ID_ROWS", 5_000)
    data = _data(20_000)
    content = np.random.default_rng(1).standard_normal((20_000, 16)).astype(np.float32)
    cfg = TrainConfig(epochs=1, batch_size=64).resolved()
    scorer = TwoTowerTrainer(data, content, cfg, torch.device("cpu")).export()
    rows = np.flatnonzero(data.split.part == 0)[-20:]
    tuned = fine_tune({"epochs": 1, "batch_size": 64}, scorer, data, content, rows, 2, "cpu")
    assert np.isfinite(tuned.items).all()


def test_the_row_adam_gives_sparse_adams_numbers_then_the_decay_on_those_rows():
    """The large tables' optimiser (rows gathered, not SparseAdam's sparse masks) must give
    exactly what torch's SparseAdam then a decay of the touched rows gave: the same
    numbers, bit for bit, repeated and absent rows included."""
    import torch

    from mmrec.recsys.twotower import _row_adam

    start = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    mine, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    ours, reference = _row_adam([mine], 1e-2, 0.1), torch.optim.SparseAdam([theirs], lr=1e-2)
    draw, touched = torch.Generator().manual_seed(1), torch.zeros(300, dtype=torch.bool)
    for step in range(6):
        rows = torch.randint(0, 300, (0 if step == 2 else 40,), generator=draw)  # repeats; one empty
        touched[rows] = True
        values = torch.randn(len(rows), 8, generator=draw)
        lr = 1e-2 * (step + 1) / 6  # as the schedule moves it
        for group in ours.param_groups + reference.param_groups:
            group["lr"] = lr
        for w in (mine, theirs):
            w.grad = torch.sparse_coo_tensor(rows[None], values, (300, 8), check_invariants=True)
        ours.step()
        reference.step()
        with torch.no_grad():
            theirs[theirs.grad.coalesce().indices()[0]] *= 1 - lr * 0.1
    assert torch.equal(mine, theirs)
    assert not touched.all() and torch.equal(mine[~touched], start[~touched])
    assert not torch.equal(mine[touched], start[touched])


def test_fit_frees_the_trainer_before_the_final_validation_and_the_write(monkeypatch):
    """The trainer (at 1M items 0.8 GB of id tables and optimiser moments) holds its own
    loss, a reference cycle: fit must free it, not leave it to a later collection."""
    import gc
    import weakref

    import mmrec.recsys.train as train
    from mmrec.progress import NullProgress
    from mmrec.recsys.data import Content

    made: list[weakref.ref] = []
    build = train.TRAINERS[train.ModelKind.TWOTOWER]
    monkeypatch.setitem(train.TRAINERS, train.ModelKind.TWOTOWER,
                        lambda *a: made.append(weakref.ref(trainer := build(*a))) or trainer)
    data = _data(1_000)
    content = Content(data.item_ids, np.random.default_rng(1).standard_normal((1_000, 16)).astype(np.float32),
                      {"text": (0, 16)}, None)
    cfg = TrainConfig(epochs=1, batch_size=64, patience=0).resolved()
    gc.disable()  # no automatic collection can hide a trainer left alive
    try:
        scorer, _ = train.fit(data, content, cfg, NullProgress())
    finally:
        gc.enable()
    assert made and made[0]() is None
    assert np.isfinite(scorer.items).all()
