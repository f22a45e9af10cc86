"""Where the querying party's queries come from: indices into the dataset's query pool, or into a
query file.

Query ids are the indices into the query pool (the first part of the test split, as in the original
CaPC learning code), or, when the run file names a ``query_file`` (an ``.npz`` with ``x`` and optionally
``y``, like the original's exported ``*samples*.npy``), indices into that file. True labels are loaded
only to print them next to the obtained labels and to measure label accuracy, never to train.
"""

from __future__ import annotations

import numpy as np

from capc.errors import ConfigError
from capc.parties.runconfig import RunConfig


def load_queries(cfg: RunConfig) -> tuple[np.ndarray, list[int | None]]:
    """The run's query inputs (NHWC float32 in [0, 1]) and their true labels (None where unknown)."""
    if cfg.query_file:
        try:
            with np.load(cfg.query_file) as data:
                x = np.asarray(data["x"], dtype=np.float32)
                y = np.asarray(data["y"]) if "y" in data.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"query file {cfg.query_file}: cannot read an array 'x' from it ({exc})") from None
        where = f"query file {cfg.query_file}"
    else:
        from capc.learning.datasets import load_dataset

        ds = load_dataset(cfg.dataset, cfg.data_dir)
        x, y = ds.x_query, ds.y_query
        where = f"the {cfg.dataset} query pool"
    bad = [q for q in cfg.queries if not 0 <= q < len(x)]
    if bad:
        raise ConfigError(f"query id {bad[0]} is outside {where} (0..{len(x) - 1})")
    if y is not None and len(y) != len(x):
        raise ConfigError(f"{where}: {len(x)} queries but {len(y)} labels")
    idx = np.asarray(cfg.queries, dtype=np.int64)
    labels = [int(v) for v in y[idx]] if y is not None else [None] * len(idx)
    return x[idx], labels
