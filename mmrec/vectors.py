"""Vector helpers shared by indexes, fusion, scoring and baselines (numpy only)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm (all-zero rows stay zero): what indexes hold."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def with_bias(vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Item rows with per-item score terms as last columns (a hubness correction, one
    column per query modality): a query's weights there pick the terms it gets."""
    import numpy as np

    return np.hstack([np.asarray(vectors, dtype=np.float32),
                      np.asarray(bias, dtype=np.float32).reshape(len(vectors), -1)])


def with_one(queries: np.ndarray) -> np.ndarray:
    """Query rows with a 1 as the last column (see :func:`with_bias`)."""
    import numpy as np

    queries = np.asarray(queries, dtype=np.float32)
    return np.hstack([queries, np.ones((len(queries), 1), dtype=np.float32)])
