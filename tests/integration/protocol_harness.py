"""Integration-test helpers: a local run of real party processes, and the plaintext reference.

The party processes come from :mod:`capc.parties.local`; this module adds what the protocol must
reproduce: each AP's own plaintext prediction (argmax of its logits, lowest index on ties) and their
plurality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from capc.learning.datasets import load_dataset
from capc.learning.default_models import default_model_paths
from capc.learning.models import load_model, predict_logits
from capc.parties.local import LocalRun, make_local_run


#: What the protocol tests run with unless a test says otherwise: no noise and no budget (so labels are
#: the exact plurality vote), 8 fraction bits and 36 hiding bits (ties between logits closer than
#: 2^-8 are rare on the digits models), and a short deadline per wait.
TEST_PROTOCOL: dict[str, Any] = dict(frac_bits=8, hiding_bits=36, sigma_gnmax=0.0, budget_eps=float("inf"),
                                     timeout=120.0)


def make_run(tmp_path: Path, n_aps: int, queries: list[int], **protocol: Any) -> LocalRun:
    """A local run on the default digits models with :data:`TEST_PROTOCOL` unless overridden."""
    return make_local_run(tmp_path, n_aps, queries, **{**TEST_PROTOCOL, **protocol})


def wire_id(run: LocalRun, item: int) -> int:
    """The opaque id under which the run's querying party asks about pool item ``item``."""
    from capc.parties.queries import wire_query_id

    assert run.cfg.query_key is not None
    return wire_query_id(run.cfg.query_key, item)


FAULTY_PARTY = Path(__file__).with_name("faulty_party.py")


def start_with_fault(run: LocalRun, name: str, fault: str, item: int) -> Any:
    """Start party ``name`` with ``fault`` (see ``faulty_party.py``) at the pool item ``item``."""
    import sys

    return run.start(name, program=[sys.executable, str(FAULTY_PARTY), f"{fault}={wire_id(run, item)}"])


def ap_predictions(n_aps: int, query_ids: list[int]) -> np.ndarray:
    """predictions[j, k]: AP j+1's own plaintext argmax (lowest index on ties) on query k."""
    ds = load_dataset("digits")
    x = ds.x_query[query_ids]
    models = default_model_paths(n_aps + 1)[1:]
    return np.stack([np.argmax(predict_logits(load_model(m), x), axis=1) for m in models])


def clear_margin_queries(n_aps: int, count: int, margin: float = 0.05, start: int = 0) -> list[int]:
    """Query ids on which every AP's top-two logits differ by more than ``margin`` (so the fixed-point
    and CKKS approximations cannot flip any AP's vote)."""
    ds = load_dataset("digits")
    x = ds.x_query
    models = default_model_paths(n_aps + 1)[1:]
    ok = np.ones(len(x), dtype=bool)
    for m in models:
        z = np.sort(predict_logits(load_model(m), x), axis=1)
        ok &= (z[:, -1] - z[:, -2]) > margin
    ids = [int(i) for i in np.flatnonzero(ok) if i >= start]
    return ids[:count]


def plurality(preds: np.ndarray, num_classes: int = 10) -> list[int]:
    return [int(np.argmax(np.bincount(preds[:, k], minlength=num_classes))) for k in range(preds.shape[1])]
