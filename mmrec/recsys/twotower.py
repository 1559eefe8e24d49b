"""The two-tower recommender (torch), trained with sampled-softmax InfoNCE.

Item tower: the item's content vector through an adapter (an MLP, or one linear
layer), plus a learnable id vector; the sum is L2-normalised. Id vectors are dropped
at random in training (``id_dropout``) so the content path alone must score well:
that is what serves cold items, whose id vectors are zero.

User tower: a user id vector, plus a linear map of the mean of the user's history
item vectors, plus another of the mean of the latest ``recent`` of them, normalised.
In training the target item is taken out of its own history (the mean is recomputed
without it) and the recent window is the items just before the target in time, so
the tower learns to predict an item from the others and not to echo it; a new user
with a history needs no retraining.

Loss: softmax over the batch's items (in-batch negatives), optional uniform extra
negatives and hard negatives, with the logQ correction: each candidate's logit is
lowered by the log of how often it is expected among the candidates (in-batch by
training popularity, uniform by N/items), so popular items are not over-penalised
for being sampled often. A candidate that is another training positive of the row's
user is masked, not used as a negative. AdamW, linear warm-up, cosine decay.

Item-item term (:func:`item_item`): after training, the score gains ``w * sum over the
history h of W[h, i]`` with ``W`` EASE's closed form on the training interactions, its
lambda and ``w`` chosen on validation (``w`` 0, the towers alone, is a candidate). The
towers carry content and cold items; ``W`` what co-occurrence says of warm ones, where
EASE alone beats a dot product of learned vectors on a random split. Only up to
ITEM_ITEM_MAX items: ``W`` is dense, items^2 floats.

A step costs what its batch costs, not what the catalog costs: the item tower runs
only on the rows the step needs (the batch's items, its negatives, and the history
and recent-window items of its users, at most ``HISTORY_CAP`` per user), gathered
from the content matrix, which stays where it is (memory-mapped on CPU). Every
item's vector is computed only on export, ``EXPORT_CHUNK`` rows at a time. Id tables
beyond SPARSE_ID_ROWS rows get sparse gradients and touched-rows-only updates.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec import distributed as dist
from mmrec.progress import NullProgress, Progress
from mmrec.recsys.config import ITEM_ITEM_MAX, TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import Linear, TwoTowerScorer
from mmrec.recsys.splits import TRAIN
from mmrec.runtime import one_cpu_thread
from mmrec.store import release

if TYPE_CHECKING:
    import torch

HARD_POOL = 50  # hard negatives are drawn from each user's top this many non-positives
HISTORY_CAP = 256  # a step averages at most this many of a user's history items (sampled)
EXPORT_CHUNK = 65_536  # item rows per forward pass when exporting every item's vector
DENSE_MASK_LIMIT = 50_000_000  # users x items: up to this a bitmap of positives (<= 50 MB)
# An id table with more rows than this gets sparse gradients and lazy (touched rows only)
# Adam updates with decoupled weight decay: a dense gradient and update of a 1M x 64
# table cost ~1-3 s a step (measured), the rest of the step ~1 s. Smaller tables keep
# the exact dense AdamW (their update is cheap, and the quality figures are theirs).
SPARSE_ID_ROWS = 200_000
FUSED_PARAMS = 4_000_000  # dense parameters above which AdamW runs fused
RELEASE_EVERY = 32  # steps between drops of the memory-mapped content's resident pages


def _net(content_dim: int, n_items: int, n_users: int, cfg: TrainConfig, sparse: bool = False):
    from torch import nn

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = ([nn.Linear(content_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim)]
                      if cfg.hidden else [nn.Linear(content_dim, cfg.dim)])
            self.adapter = nn.Sequential(*layers)
            # zero ids: training starts from content alone and ids learn the residual
            self.item_id = nn.Embedding(n_items, cfg.dim, sparse=sparse and n_items > SPARSE_ID_ROWS)
            self.user_id = nn.Embedding(n_users, cfg.dim, sparse=sparse and n_users > SPARSE_ID_ROWS)
            nn.init.zeros_(self.item_id.weight)
            nn.init.zeros_(self.user_id.weight)
            self.history = nn.Linear(cfg.dim, cfg.dim)
            self.recent = nn.Linear(cfg.dim, cfg.dim) if cfg.recent else None

    return TwoTowerNet()


def _row_dropout(weight: torch.Tensor, p: float, training: bool,
                 rows: slice | None = None, n: int | None = None) -> torch.Tensor:
    """Drop whole rows (an item's or user's id vector), rescaling the kept ones.

    ``rows`` of ``n``: ``weight`` is that part of an ``n``-row batch (one rank's shard);
    the draw is for all ``n`` rows so the random stream, and the rows' fate, are those
    of one process."""
    import torch

    if not training or p == 0:
        return weight
    n = weight.shape[0] if n is None else n
    keep = (torch.rand(n, 1, device=weight.device) >= p).to(weight.dtype)
    return weight * keep[rows or slice(None)] / (1 - p)


class TwoTowerTrainer:
    """One model, its optimiser and its training data on ``device``."""

    sparse_ids = True  # large id tables train sparsely (see SPARSE_ID_ROWS); DP-SGD's cannot

    def __init__(self, data: Data, content: np.ndarray, cfg: TrainConfig, device: torch.device,
                 sparse_ids: bool | None = None) -> None:
        import torch

        self.data, self.cfg, self.device = data, cfg, device
        self.sparse_ids = self.sparse_ids if sparse_ids is None else sparse_ids
        train = data.split.part == TRAIN
        self.pairs = np.stack([data.users[train], data.items[train]], axis=1)
        counts = data.train_counts()
        self.known = torch.from_numpy(counts > 0).to(device)
        # on CPU the (memory-mapped) matrix is only gathered from; an accelerator gets a copy
        self.content = ((content if content.dtype == np.float32 else content.astype(np.float32))
                        if device.type == "cpu" else
                        torch.from_numpy(np.array(content, dtype=np.float32)).to(device))
        sparse = self.sparse_ids and dist.world().size == 1  # DDP all-reduces dense gradients
        self.net = _net(content.shape[1], data.n_items, data.n_users, cfg, sparse).to(device)
        pop = counts / max(counts.sum(), 1)
        # log of each item's expected count among a batch's items; unseen items never appear
        self.log_q = torch.from_numpy(np.log(np.maximum(pop * cfg.batch_size, 1e-12))).float().to(device)
        self.bitmap = self.keys = None
        if data.n_users * data.n_items <= DENSE_MASK_LIMIT:  # a lookup beats a search per pair
            self.bitmap = torch.zeros(data.n_users, data.n_items, dtype=torch.bool, device=device)
            self.bitmap[torch.from_numpy(self.pairs[:, 0]), torch.from_numpy(self.pairs[:, 1])] = True
        else:
            keys = np.unique(self.pairs[:, 0] * data.n_items + self.pairs[:, 1])
            self.keys = torch.from_numpy(keys).to(device)
        self.indptr, self.history_items = _by_user(self.pairs, data.n_users)
        self.windows = _windows(self.pairs[:, 0], self.pairs[:, 1], cfg.recent)
        self.steps_per_epoch = max(1, math.ceil(len(self.pairs) / cfg.batch_size))
        self.sparse = [m.weight for m in (self.net.item_id, self.net.user_id) if m.sparse]
        dense = [w for w in self.net.parameters() if all(w is not t for t in self.sparse)]
        # fused: one pass over each parameter, where the unfused update's ~10 full-size
        # temporaries of a large id table cost (0.3 s a step for 1M x 64, vs 0.03); not
        # below FUSED_PARAMS, where they cost nothing and the unfused update keeps the
        # numbers small catalogs (the demo, MovieLens) were measured and chosen with
        fused = device.type in ("cpu", "cuda") and sum(w.numel() for w in dense) > FUSED_PARAMS
        self.optimizer = torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=fused)
        total = self.steps_per_epoch * cfg.epochs
        # A fixed warm-up can outlast a small run (the demo: 1 step an epoch), leaving the
        # learning rate far below its peak throughout: cap it at a tenth of the run.
        warmup = min(cfg.warmup, total // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _lr_factor(s, warmup, total))
        self.sparse_optimizer = self.sparse_scheduler = None
        if self.sparse:
            self.sparse_optimizer = _row_adam(self.sparse, cfg.lr, cfg.weight_decay)
            self.sparse_scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.sparse_optimizer, lambda s: _lr_factor(s, warmup, total))
        self.hard: np.ndarray | None = None  # per user, item rows mined each epoch
        self.rng = np.random.default_rng(cfg.seed)
        # under torchrun: DDP; each rank runs the user tower on its shard of the batch
        self.batch_loss = dist.data_parallel(self.net, self._loss, device)

    tuned_text = None  # --tune text: a recsys.content_tune.TunedContent, set by train()

    def _content_rows(self, rows: np.ndarray, positives: np.ndarray | None = None) -> torch.Tensor:
        import torch

        if isinstance(self.content, np.ndarray):
            found = torch.from_numpy(self.content[rows]).to(self.device)
        else:
            found = self.content[torch.from_numpy(rows).to(self.device)]
        # the text block from the tuned encoder: ``positives`` re-encoded, so the loss
        # reaches its layers, the other rows from its cache (see content_tune)
        return found if self.tuned_text is None else self.tuned_text.splice(found, rows, positives)

    def tower(self, rows: np.ndarray, training: bool, positives: np.ndarray | None = None) -> torch.Tensor:
        """Item vectors of ``rows`` only (the item tower on those content rows);
        ``positives``: the step's positive items (with ``--tune text``, the rows whose
        text is re-encoded with gradients)."""
        import torch
        import torch.nn.functional as F

        index = torch.from_numpy(rows).to(self.device)
        ids = self.net.item_id(index) * self.known[index][:, None]
        return F.normalize(self.net.adapter(self._content_rows(rows, positives))
                           + _row_dropout(ids, self.cfg.id_dropout, training), dim=-1)

    def item_vectors(self, training: bool = False) -> torch.Tensor:
        """Every item's vector, ``EXPORT_CHUNK`` rows at a time (export and mining only)."""
        import torch

        rows, parts = np.arange(self.data.n_items), []
        release(self.content)  # the steps' pages (~1.4 GB at 1M), else export adds to them
        for at in range(0, len(rows), EXPORT_CHUNK):
            parts.append(self.tower(rows[at:at + EXPORT_CHUNK], training))
            release(self.content)  # read once: its pages need not stay resident
        return torch.cat(parts)

    def _histories(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch row, item row) of each batch user's training history, at most
        ``HISTORY_CAP`` items per row (a uniform sample beyond)."""
        start, size = self.indptr[users], np.diff(self.indptr)[users]
        take = np.minimum(size, HISTORY_CAP)
        owner = np.repeat(np.arange(len(users)), take)
        offset = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
        over = np.repeat(size > take, take)
        if over.any():  # sampled with replacement: unbiased for the mean, cheap to draw
            offset[over] = (self.rng.random(int(over.sum())) * np.repeat(size, take)[over]).astype(np.int64)
        return owner, self.history_items[np.repeat(start, take) + offset]

    def _users(self, users: torch.Tensor, picked: np.ndarray, history: tuple[np.ndarray, np.ndarray],
               vectors: torch.Tensor, rows_of: np.ndarray) -> torch.Tensor:
        """User vectors for training rows, each without its own target in the history:
        batch-local sums over the rows ``history`` names ((batch row, item row) pairs);
        ``vectors`` are those of the item rows ``rows_of`` (see :meth:`_step_rows`).
        Under torchrun, for this rank's shard of the rows, gathered from all ranks."""
        import torch
        import torch.nn.functional as F

        n, mine = len(picked), dist.shard(len(picked))
        owner, rows = history
        ours = (owner >= mine.start) & (owner < mine.stop)
        owner, rows = owner[ours] - mine.start, rows[ours]
        users, picked = users[mine], picked[mine]
        keep = rows != self.pairs[picked, 1][owner]  # the target is left out of its own history
        owner, rows = owner[keep], rows[keep]
        place = self._places(rows_of, rows)
        index = torch.from_numpy(owner).to(self.device)
        sums = torch.zeros(len(picked), vectors.shape[1], device=self.device, dtype=vectors.dtype)
        sums = sums.index_add(0, index, vectors[place])
        count = torch.bincount(index, minlength=len(picked)).clamp(min=1)
        mean = sums / count[:, None].to(vectors.dtype)
        own = _row_dropout(self.net.user_id(users), self.cfg.id_dropout, True, mine, n)
        mixed = self.net.history(mean)
        if self.windows is not None:
            window = self.windows[picked]
            present = torch.from_numpy(window >= 0).to(self.device).float()[..., None]
            place = self._places(rows_of, np.maximum(window, 0))
            latest = (vectors[place] * present).sum(1) / present.sum(1).clamp(min=1)
            mixed = mixed + self.net.recent(latest)
        return dist.gather_rows(F.normalize(own + mixed, dim=-1), n)

    def _step_rows(self, picked: np.ndarray, extra: np.ndarray, history: np.ndarray,
                   hard: np.ndarray | None) -> np.ndarray:
        """The item rows this step touches, sorted: :meth:`_places` finds an item row's
        place among them (a search, not an items-long map: 8 MB zeroed per step at 1M)."""
        parts = [self.pairs[picked, 1], extra, history]
        if self.windows is not None:
            parts.append(self.windows[picked][self.windows[picked] >= 0])
        if hard is not None:
            parts.append(hard.ravel())
        return np.unique(np.concatenate(parts))

    def _places(self, rows: np.ndarray, items: np.ndarray) -> torch.Tensor:
        """Where each of ``items`` (all among the sorted ``rows``) is in ``rows``."""
        import torch

        return torch.from_numpy(np.searchsorted(rows, items)).to(self.device)

    def _loss(self, picked: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        batch = self.pairs[picked]
        users = torch.from_numpy(batch[:, 0]).to(self.device)
        items = torch.from_numpy(batch[:, 1]).to(self.device)
        extra = self.rng.integers(0, self.data.n_items, self.cfg.negatives)
        hard = self._draw_hard(batch[:, 0]) if self.hard is not None else None
        history = self._histories(batch[:, 0])
        rows = self._step_rows(picked, extra, history[1], hard)
        vectors = self.tower(rows, training=True, positives=batch[:, 1])  # the step's items only
        queries = self._users(users, picked, history, vectors, rows)
        cand = np.concatenate([batch[:, 1], extra])
        log_q = self.log_q[items]
        if self.cfg.negatives:
            log_q = torch.cat([log_q, torch.full((len(extra),), math.log(self.cfg.negatives / self.data.n_items),
                                                 device=self.device)])
        logits = queries @ vectors[self._places(rows, cand)].T / self.cfg.temperature - log_q
        positive = self._positive(users, torch.from_numpy(cand).to(self.device))
        index = torch.arange(len(batch), device=self.device)
        positive[index, index] = False  # the row's own target stays the positive
        logits = logits.masked_fill(positive, float("-inf"))
        if hard is not None:
            near = vectors[self._places(rows, hard)]
            logits = torch.cat([logits, (queries[:, None, :] * near).sum(-1) / self.cfg.temperature], dim=1)
        return F.cross_entropy(logits, index)

    def _positive(self, users: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """``(users, candidates)``: is the candidate a training positive of the row's user."""
        import torch

        if self.bitmap is not None:
            return self.bitmap[users[:, None], cand[None, :]]
        keys = users[:, None] * self.data.n_items + cand[None, :]
        found = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[found] == keys

    def _draw_hard(self, users: np.ndarray) -> np.ndarray:
        pool = self.hard[users]
        pick = self.rng.integers(0, pool.shape[1], size=(len(users), self.cfg.hard_negatives))
        return np.take_along_axis(pool, pick, axis=1)

    def _mine_hard(self) -> None:
        """Each user's top non-positive items under the current model, from a faiss index."""
        from mmrec.index import VectorIndex

        scorer = self.export()
        history = self.data.history(TRAIN)
        users = np.arange(self.data.n_users)
        index = VectorIndex.build([str(i) for i in range(self.data.n_items)], scorer.items)
        found = index.search(scorer.user_vectors(users, history), HARD_POOL,
                             exclude=[map(str, history[u]) for u in users])
        pool = np.zeros((len(users), HARD_POOL), dtype=np.int64)
        for u, hits in enumerate(found):
            rows = [int(i) for i, _ in hits] or [0]
            pool[u] = np.resize(rows, HARD_POOL)
        self.hard = pool

    def epoch(self, rng: np.random.Generator) -> float:
        import torch

        self.rng = rng
        if self.cfg.hard_negatives:
            self._mine_hard()
        self.net.train()
        order = rng.permutation(len(self.pairs))
        total = 0.0
        with one_cpu_thread(self.device):  # reproducible, and faster on a busy CPU
            for step in range(self.steps_per_epoch):
                picked = order[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size]
                if len(picked) < 2:
                    continue
                loss = self.batch_loss(picked)
                self.optimizer.zero_grad(set_to_none=True)
                for w in self.sparse:
                    w.grad = None
                loss.backward()
                for w in self.sparse:  # one entry per row, so the norm below is the true one
                    if w.grad is not None:
                        w.grad = w.grad.coalesce()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
                self.optimizer.step()
                self.scheduler.step()
                if self.sparse_optimizer is not None:
                    self._sparse_step()
                if step % RELEASE_EVERY == 0:  # the map's pages the steps read: 1.5 GB at 1M
                    release(self.content)
                total += loss.item()
        return total / self.steps_per_epoch

    def _sparse_step(self) -> None:
        """Lazy Adam on the rows of the large id tables this step touched, with AdamW's
        decoupled weight decay on those rows only (an untouched row keeps its value)."""
        self.sparse_optimizer.step()
        self.sparse_scheduler.step()

    def export(self) -> TwoTowerScorer:
        """The current weights as a numpy scorer (no dropout)."""
        import torch

        net = self.net
        if self.tuned_text is not None:  # every item's text vector as the encoder is now
            self.tuned_text.refresh()
        with torch.no_grad():
            net.eval()
            items = self.item_vectors(training=False)
            layers = [m for m in net.adapter if isinstance(m, torch.nn.Linear)]

            def arr(t: torch.Tensor) -> np.ndarray:
                return t.detach().float().cpu().numpy().copy()

            return TwoTowerScorer(
                arr(items), self.data.train_counts().astype(np.float32), arr(net.user_id.weight),
                Linear(arr(net.history.weight.T), arr(net.history.bias)),
                arr(net.item_id.weight * self.known[:, None]),
                adapter=[(arr(m.weight), arr(m.bias)) for m in layers], recent=self.cfg.recent,
                recent_term=Linear(arr(net.recent.weight.T), arr(net.recent.bias)) if net.recent else None,
            )


def _row_adam(params: list[torch.Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's SparseAdam, the same arithmetic op for op (so the same numbers), then
    AdamW's decoupled weight decay, on the gradient's rows only: gathered with
    ``index_select``, written back with ``index_add_`` / ``index_copy_``. SparseAdam's
    ``sparse_mask`` and sparse-into-dense adds, and the decay's own gather, cost ~34 ms a
    step on a 1M x 64 table with ~20k touched rows (measured, one thread)."""
    import torch

    class RowAdam(torch.optim.SparseAdam):
        @torch.no_grad()
        def step(self, closure: Any = None) -> None:
            for group in self.param_groups:
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = p.grad.coalesce()  # the update is non-linear: rows must be unique
                    lr = float(group["lr"])
                    rows, values = grad.indices()[0], grad.values()
                    state = self.state[p]
                    if not state:
                        state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                    state["step"] += 1
                    if values.numel() == 0:
                        continue
                    exp_avg, exp_avg_sq, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
                    old_avg = exp_avg.index_select(0, rows)
                    avg_update = values.sub(old_avg).mul_(1 - beta1)
                    exp_avg.index_add_(0, rows, avg_update)
                    old_sq = exp_avg_sq.index_select(0, rows)
                    sq_update = values.pow(2).sub_(old_sq).mul_(1 - beta2)
                    exp_avg_sq.index_add_(0, rows, sq_update)
                    numer = avg_update.add_(old_avg)
                    denom = sq_update.add_(old_sq).sqrt_().add_(group["eps"])
                    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                    moved = p.index_select(0, rows).add_(-step_size * numer.div_(denom))
                    p.index_copy_(0, rows, moved.mul_(1 - lr * weight_decay))

    return RowAdam(params, lr=lr)


def _by_user(pairs: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the training pairs: user ``u``'s items are ``items[indptr[u]:indptr[u + 1]]``."""
    order = np.argsort(pairs[:, 0], kind="stable")
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n_users), out=indptr[1:])
    return indptr, pairs[order, 1].astype(np.int64)


def _windows(users: np.ndarray, items: np.ndarray, size: int) -> np.ndarray | None:
    """``(pairs, size)``: for each pair, the item rows of the same user's ``size``
    pairs just before it (pairs are grouped by user in time order), -1 where none."""
    if not size:
        return None
    index = np.arange(len(users))
    out = np.full((len(users), size), -1, dtype=np.int64)
    for back in range(1, size + 1):
        prev = index - back
        same = (prev >= 0) & (users[np.maximum(prev, 0)] == users)
        out[same, back - 1] = items[prev[same]]
    return out


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


# The item-item term's weight, in units of the towers' score spread over EASE's (see
# item_item); 0 first: the towers alone unless validation says otherwise.
ITEM_ITEM_GRID = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
SPREAD_USERS = 1000  # training users whose scores set the spread ratio (seeded sample)


def item_item(scorer: TwoTowerScorer, data: Data, cfg: TrainConfig,
              progress: Progress | None = None) -> tuple[TwoTowerScorer, dict[str, Any]]:
    """The trained towers plus an EASE item-item term, both its parts chosen on validation.

    ``score(u, i) = cos(user tower, item tower) + w * sum over the history h of W[h, i]``
    with ``W`` EASE's closed form (Steck 2019) on the training part: its lambda (``reg``)
    as ``--model ease`` picks it on validation NDCG@20, then ``w`` from ITEM_ITEM_GRID
    times the ratio of the two scores' spreads (over training users' full rankings),
    again on validation NDCG@20, 0 (the towers alone) among the candidates. The towers
    carry content and serve cold items; the item-item term adds what co-occurrence
    says about warm ones. A cold item's column is zero, so cold-item rankings are the
    towers'. Returns the scorer and ``{"chosen", "trials"}`` for the report, or the
    towers alone and ``{}`` where the term is off: ``cfg.item_item`` False, DP-SGD
    (None then means off), or by default above ITEM_ITEM_MAX items (``cfg.item_item``
    True: up to EASE's own itemitem.MAX_ITEMS, refused above).
    """
    from mmrec.recsys.baselines import ease
    from mmrec.recsys.tuning import tune

    if cfg.item_item is False or cfg.dp_epsilon is not None:
        return scorer, {}
    if data.n_items > ITEM_ITEM_MAX and not cfg.item_item:  # asked for: up to EASE's own bound
        (progress or NullProgress()).log(f"{data.n_items} items: above {ITEM_ITEM_MAX}, the "
                                         "towers score alone (no item-item term)")
        return scorer, {}
    easy, found = ease(data, cfg, progress or NullProgress())
    weights = easy.items.T  # EASEScorer keeps W's columns as rows; a view, not a copy
    ratio = _spread_ratio(scorer, weights, data, cfg.seed)
    # the weight only scales the query's indicator: every candidate shares one items array
    # (items x (d + items) floats, 400 MB at 10k items), built once
    full = scorer.with_item_item(weights, 1.0)
    del easy, weights

    def fit(item_item_weight: float) -> TwoTowerScorer:
        if item_item_weight > 0:
            return dataclasses.replace(full, item_item_weight=float(item_item_weight))
        return scorer

    grid = {"item_item_weight": tuple(round(k * ratio, 6) for k in ITEM_ITEM_GRID)}
    blended, blend = tune(data, cfg, grid, fit, progress)
    chosen = {**found["chosen"], **blend["chosen"]}
    return blended, {"chosen": chosen, "trials": found["trials"] + blend["trials"]}


def _spread_ratio(scorer: TwoTowerScorer, weights: np.ndarray, data: Data, seed: int) -> float:
    """Standard deviation of the towers' scores over EASE's, on a seeded sample of
    training users' scores of every item: the scale at which the two terms weigh alike."""
    history = data.history(TRAIN)
    users = np.flatnonzero(history.sizes() > 0)
    if len(users) > SPREAD_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, SPREAD_USERS, replace=False))
    picked = history.take(users)
    towers = scorer.user_vectors(users, picked) @ scorer.tower_items.T
    indicator = np.zeros((len(users), weights.shape[0]), dtype=np.float32)
    indicator[np.repeat(np.arange(len(users)), picked.sizes()), picked.indices] = 1.0
    spread = float((indicator @ weights).std())
    return float(towers.std()) / spread if spread > 0 else 0.0
