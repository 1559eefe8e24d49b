from __future__ import annotations

import pytest

from mmrec.errors import ConfigError
from mmrec.plots import curves, plot_metrics


def test_curves_group_metrics_by_name_and_sort_by_k():
    result = {"recall@10": 0.5, "recall@5": 0.3, "ndcg@5": 0.2, "users": 10,
              "text->image": {"recall@1": 0.1, "recall@5": 0.4, "median_rank": 3}}
    assert curves(result) == {"recall": [(5, 0.3), (10, 0.5)], "ndcg": [(5, 0.2)],
                              "text->image recall": [(1, 0.1), (5, 0.4)]}


def test_plot_writes_a_png(tmp_path):
    out = plot_metrics({"recall@5": 0.3, "recall@10": 0.5}, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_to_plot(tmp_path):
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_metrics({"users": 3}, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
