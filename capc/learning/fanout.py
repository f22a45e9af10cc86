"""Train K party models and collect their votes on a query set, fanned out through Ray.

Training K = 250 party models and running each on thousands of queries is embarrassingly parallel:
one Ray task per party trains that party's architecture on its own slice and returns its logits and
votes on the queries. Ray schedules the tasks over this machine's cores (default: a Ray runtime
started on this machine) or over a cluster (``ray_address``, e.g. ``"ray://head:10001"`` or
``"auto"``). Without Ray installed the same work runs in this process, one party after the other,
after saying so (``pip install "capc[ray]"`` adds Ray).

Each party's training is seeded with ``seed + party_id``, so the votes do not depend on the backend
or on the scheduling order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from capc.learning.errors import LearningError


@dataclass(frozen=True, eq=False)
class FanoutResult:
    """Per-party outputs on the query set.

    Attributes:
        logits: (K, Q, C) float32 logits of party k on query q.
        votes: (K, Q) int64 argmax of each party (lowest class wins ties, as np.argmax).
        architectures: the architecture each party trained.
        backend: ``"ray"`` or ``"in-process"``.
    """

    logits: np.ndarray
    votes: np.ndarray
    architectures: tuple[str, ...]
    backend: str

    def histograms(self, num_classes: int | None = None) -> np.ndarray:
        """(Q, C) vote counts per query, the plaintext input of the noisy argmax."""
        c = self.logits.shape[2] if num_classes is None else int(num_classes)
        return np.stack([np.bincount(col, minlength=c) for col in self.votes.T]) if self.votes.size \
            else np.zeros((0, c), dtype=np.int64)


def _train_one(party_id: int, architecture: str, x: np.ndarray, y: np.ndarray, x_query: np.ndarray,
               num_classes: int, epochs: int, width: float, seed: int) -> np.ndarray:
    """One party: train, then its logits on the queries (runs inside a Ray worker or in-process)."""
    from capc.learning.architectures import train_architecture
    from capc.learning.models import predict_logits

    model = train_architecture(architecture, x, y, num_classes=num_classes, seed=seed + party_id,
                               epochs=epochs, width=width)
    return np.asarray(predict_logits(model, x_query), dtype=np.float32)


def train_and_vote(parts: Sequence[tuple[np.ndarray, np.ndarray]], architectures: str | Sequence[str],
                   x_query: np.ndarray, *, num_classes: int = 10, epochs: int = 1, width: float = 1.0,
                   seed: int = 0, use_ray: bool | None = None, ray_address: str | None = None,
                   num_cpus: int | None = None) -> FanoutResult:
    """Train one model per party on ``parts[k] = (x_k, y_k)`` and compute every party's votes.

    Args:
        parts: each party's private training data.
        architectures: a name, a comma-separated list or a sequence, assigned round robin
            (:func:`capc.learning.architectures.assign_architectures`).
        x_query: the queries (Q, H, W, C), scaled like the training data.
        num_classes, epochs, width: passed to the training of every party.
        seed: base seed; party k trains with ``seed + k``.
        use_ray: ``True`` requires Ray, ``False`` runs in-process, ``None`` (default) uses Ray when
            it is installed and otherwise runs in-process with a warning.
        ray_address: connect to this Ray cluster instead of starting one on this machine.
        num_cpus: CPUs of the local Ray runtime (default: all); ignored with ``ray_address``.

    Raises:
        LearningError: no parties, Ray required but missing, or a party's training failed (the
            message names the party).
    """
    from capc.learning.architectures import assign_architectures

    if len(parts) == 0:
        raise LearningError("train_and_vote needs at least one party's data")
    archs = assign_architectures(architectures, len(parts))
    x_query = np.asarray(x_query, dtype=np.float32)
    ray = _import_ray(use_ray, ray_address)
    if ray is None:
        logits = []
        for k, ((x, y), arch) in enumerate(zip(parts, archs)):
            try:
                logits.append(_train_one(k, arch, x, y, x_query, num_classes, epochs, width, seed))
            except Exception as exc:
                raise LearningError(f"party {k} ({arch}) failed to train: {exc}") from exc
        backend = "in-process"
    else:
        logits = _run_on_ray(ray, parts, archs, x_query, num_classes, epochs, width, seed, ray_address,
                             num_cpus)
        backend = "ray"
    stacked = np.stack(logits)
    return FanoutResult(logits=stacked, votes=stacked.argmax(axis=2).astype(np.int64),
                        architectures=tuple(archs), backend=backend)


def _import_ray(use_ray: bool | None, ray_address: str | None) -> Any:
    if use_ray is False:
        if ray_address:
            raise LearningError("ray_address given but use_ray=False; drop one of them")
        return None
    try:
        import ray
    except ImportError:
        if use_ray or ray_address:
            raise LearningError("Ray is not installed but was asked for (use_ray / ray_address); "
                                "install it with: pip install \"capc[ray]\"") from None
        warnings.warn("Ray is not installed: training the party models one after the other in this "
                      "process (pip install \"capc[ray]\" to fan out over cores or a cluster)",
                      RuntimeWarning, stacklevel=3)
        return None
    return ray


def _run_on_ray(ray: Any, parts: Sequence[tuple[np.ndarray, np.ndarray]], archs: list[str],
                x_query: np.ndarray, num_classes: int, epochs: int, width: float, seed: int,
                ray_address: str | None, num_cpus: int | None) -> list[np.ndarray]:
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if ray_address:
            kwargs["address"] = ray_address
        elif num_cpus is not None:
            kwargs["num_cpus"] = int(num_cpus)
        ray.init(**kwargs)
        started = True
    try:
        task = ray.remote(num_cpus=1)(_train_one)
        query_ref = ray.put(x_query)  # shipped once, shared by every task
        refs = [task.remote(k, arch, np.asarray(x), np.asarray(y), query_ref, num_classes, epochs, width,
                            seed) for k, ((x, y), arch) in enumerate(zip(parts, archs))]
        out = []
        for k, ref in enumerate(refs):
            try:
                out.append(ray.get(ref))
            except Exception as exc:  # RayTaskError wraps the party's own exception
                raise LearningError(f"party {k} ({archs[k]}) failed to train on Ray: {exc}") from exc
        return out
    finally:
        if started:
            ray.shutdown()
