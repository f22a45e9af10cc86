"""Where the querying party's queries come from: indices into the dataset's query pool.

Query ids are the indices into the query pool (the first part of the test split, as in the original
CaPC learning code); the true labels are loaded only to print them next to the obtained labels and to
measure label accuracy, never to train.
"""

from __future__ import annotations

import numpy as np

from capc.errors import ConfigError
from capc.parties.runconfig import RunConfig


def load_queries(cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The run's query inputs (NHWC float32 in [0, 1]) and their true labels."""
    from capc.learning.datasets import load_dataset

    ds = load_dataset(cfg.dataset, cfg.data_dir)
    pool = len(ds.y_query)
    bad = [q for q in cfg.queries if not 0 <= q < pool]
    if bad:
        raise ConfigError(f"query id {bad[0]} is outside the {cfg.dataset} query pool (0..{pool - 1})")
    idx = np.asarray(cfg.queries, dtype=np.int64)
    return ds.x_query[idx], ds.y_query[idx]
