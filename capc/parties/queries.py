"""Where the querying party's queries come from: indices into the dataset's query pool, or into a
query file.

Query ids are the indices into the query pool (the first part of the test split, as in the original
CaPC learning code), or, when the run file names a ``query_file`` (an ``.npz`` with ``x`` and optionally
``y``, like the original's exported ``*samples*.npy``), indices into that file. True labels are loaded
only to print them next to the obtained labels and to measure label accuracy, never to train.

These indices never leave the querying party.  On the wire, and so in every other party's logs,
ledger and replay checks, a query is named by an opaque id, a keyed pseudorandom function of the index
under the QP's secret ``query_key`` (:func:`wire_query_id`): an answering party that knows the dataset
and reads its own log cannot tell which pool item was asked, while the QP, asking an item again under
the same key, sends the same id, so replays are still caught everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np

from capc.errors import ConfigError
from capc.parties.runconfig import RunConfig


#: Opaque ids are 63-bit: they travel in uint64 fields and fit SQLite's signed integers.
WIRE_ID_BITS = 63


def new_query_key() -> str:
    """A fresh secret for :func:`wire_query_id` (64 hex digits)."""
    return secrets.token_hex(32)


def wire_query_id(query_key: str, item: int) -> int:
    """The opaque id under which the querying party asks about pool item ``item``: HMAC-SHA256 of
    the item under the QP's ``query_key``, truncated to 63 bits (collisions among a run's queries have
    probability about n^2 / 2^64)."""
    mac = hmac.new(bytes.fromhex(query_key), b"capc-query-id:%d" % int(item), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") >> (64 - WIRE_ID_BITS)


def wire_query_ids(cfg: RunConfig) -> list[int]:
    """The opaque ids of the run's queries, in order (ConfigError without a key or on a collision)."""
    if not cfg.query_key:
        raise ConfigError("the querying party's run file has no 'query_key' for its opaque query ids")
    ids = [wire_query_id(cfg.query_key, q) for q in cfg.queries]
    if len(set(ids)) != len(ids):
        raise ConfigError("two queries got the same opaque id; draw a new 'query_key'")
    return ids


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

        if not cfg.dataset:
            raise ConfigError("the run file names neither a dataset nor a query file for the queries")
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
