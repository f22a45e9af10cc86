"""Splitting a training set among parties: IID slices and the non-IID "weak classes" split.

Both follow the original CaPC learning code (``load_private_data`` and
``load_private_data_imbalanced``):

* **IID** — contiguous, equal slices of the (already shuffled) training set; the remainder goes to the
  last party.
* **Weak classes** — for every weak class ``c``, each of the first ``num_querying_parties`` parties
  gets ``int(weak_class_ratio * |c| / num_parties)`` samples of ``c`` and the other parties split the
  rest equally (remainder to the last party). Every other class is split equally among all parties
  (remainder to the last). So querying parties see only ``weak_class_ratio`` of their fair share of
  the weak classes, which is what CaPC is meant to repair.

Each function returns one sorted int64 index array per party; together they are disjoint and cover
every sample exactly once (checked before returning).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from capc.learning.errors import PartitionError


def iid_partition(num_samples: int, num_parties: int) -> list[np.ndarray]:
    """Contiguous equal slices of ``range(num_samples)``, the remainder to the last party.

    Raises:
        PartitionError: ``num_parties < 1`` or fewer samples than parties.
    """
    num_samples, num_parties = _check_counts(num_samples, num_parties)
    size = num_samples // num_parties
    parts = [np.arange(i * size, (i + 1) * size, dtype=np.int64) for i in range(num_parties - 1)]
    parts.append(np.arange((num_parties - 1) * size, num_samples, dtype=np.int64))
    check_partition(parts, num_samples)
    return parts


def weak_class_partition(labels: Sequence[int] | np.ndarray, num_parties: int, num_querying_parties: int,
                         weak_classes: Sequence[int], weak_class_ratio: float,
                         num_classes: int | None = None) -> list[np.ndarray]:
    """Non-IID split in which querying parties (ids ``< num_querying_parties``) lack weak classes.

    Args:
        labels: class label of every training sample (ints in ``0..num_classes-1``).
        num_parties: total number of parties K.
        num_querying_parties: Q, the parties that get only part of the weak classes (``0 <= Q < K``).
        weak_classes: the weak classes (e.g. ``[1, 2]``).
        weak_class_ratio: fraction in [0, 1] of a fair share of each weak class given to each QP.
        num_classes: number of classes; defaults to ``max(labels) + 1``.

    Returns:
        One sorted index array per party, disjoint and exhaustive.

    Raises:
        PartitionError: inconsistent arguments (the message names which).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise PartitionError(f"labels must be a 1-D integer array, got shape {labels.shape} "
                             f"dtype {labels.dtype}")
    num_samples, num_parties = _check_counts(len(labels), num_parties)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PartitionError(f"labels must lie in 0..{num_classes - 1}")
    if not 0 <= num_querying_parties < num_parties:
        raise PartitionError(f"num_querying_parties={num_querying_parties} must be in 0..{num_parties - 1} "
                             "(at least one answering party must hold the weak classes)")
    if not 0.0 <= float(weak_class_ratio) <= 1.0:
        raise PartitionError(f"weak_class_ratio={weak_class_ratio} must be in [0, 1]")
    weak = {int(c) for c in weak_classes}
    bad = sorted(c for c in weak if not 0 <= c < num_classes)
    if bad:
        raise PartitionError(f"weak classes {bad} are not classes of this dataset (0..{num_classes - 1})")

    parts: list[list[np.ndarray]] = [[] for _ in range(num_parties)]
    num_ap = num_parties - num_querying_parties
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        n = len(members)
        if c in weak:
            size_weak = int(weak_class_ratio * (n / num_parties))
            qp_total = size_weak * num_querying_parties
            size_strong = (n - qp_total) // num_ap
            for i in range(num_querying_parties):
                parts[i].append(members[i * size_weak:(i + 1) * size_weak])
            for j in range(num_ap):
                begin = qp_total + j * size_strong
                end = n if j == num_ap - 1 else begin + size_strong
                parts[num_querying_parties + j].append(members[begin:end])
        else:
            size = n // num_parties
            for i in range(num_parties):
                end = n if i == num_parties - 1 else (i + 1) * size
                parts[i].append(members[i * size:end])
    out = [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]
    check_partition(out, num_samples)
    return out


def check_partition(parts: Sequence[np.ndarray], num_samples: int) -> None:
    """Assert that ``parts`` are disjoint and together cover ``range(num_samples)`` exactly once.

    Raises:
        PartitionError: an index is out of range, repeated, or missing.
    """
    flat = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1) for p in parts]) if parts else \
        np.zeros(0, np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= num_samples):
        raise PartitionError(f"partition holds indices outside 0..{num_samples - 1}")
    counts = np.bincount(flat, minlength=num_samples)
    if (counts > 1).any():
        raise PartitionError(f"partition is not disjoint: {int((counts > 1).sum())} samples repeated")
    if (counts == 0).any():
        raise PartitionError(f"partition is not exhaustive: {int((counts == 0).sum())} samples unassigned")


def _check_counts(num_samples: int, num_parties: int) -> tuple[int, int]:
    if isinstance(num_parties, bool) or not isinstance(num_parties, (int, np.integer)) or num_parties < 1:
        raise PartitionError(f"num_parties must be a positive integer, got {num_parties!r}")
    if num_samples < num_parties:
        raise PartitionError(f"cannot split {num_samples} samples among {num_parties} parties")
    return int(num_samples), int(num_parties)
