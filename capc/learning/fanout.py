"""Fan-out of independent training tasks over processes or a cluster (Ray), or in this process.

Training K = 250 party models, running each on thousands of queries and retraining the querying
parties over several seeds are independent tasks. An :class:`Executor` runs them:

* ``use_ray=False`` (the default of every entry point): one after the other in this process;
* ``use_ray=True``: on a Ray runtime started on this machine (``num_cpus`` workers, default all
  cores) and shut down when the executor closes;
* ``ray_address="auto"`` / ``"ray://head:10001"``: on an existing Ray cluster.

:func:`train_and_vote` trains one model per party (one task each) and returns every party's
logits and votes on the queries; :func:`capc.learning.retrain.retrain_with_queries` runs its seeds
through the same executor. Party ``k`` trains with seed ``seed + k``, so results do not depend on
the backend or on the scheduling order (tests check that Ray and in-process agree).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from capc.learning.errors import LearningError

RAY_INSTALL_HINT = 'install it with: pip install "capc[ray]"'


def check_ray_request(use_ray: bool, ray_address: str | None) -> None:
    """Refuse an impossible request before any work starts: Ray asked for but not installed, or a
    cluster address with ``use_ray=False``.

    Raises:
        LearningError: the message names the problem and the fix.
    """
    if ray_address and use_ray is False:
        raise LearningError("ray_address given but use_ray=False; drop one of them")
    if (use_ray or ray_address) and importlib.util.find_spec("ray") is None:
        raise LearningError(f"Ray is not installed but was asked for (use_ray / ray_address); {RAY_INSTALL_HINT}")


class Executor:
    """Runs independent tasks in-process or on Ray; a context manager that owns the Ray runtime it
    started (one start per executor, however many task batches it runs)."""

    def __init__(self, use_ray: bool = False, ray_address: str | None = None,
                 num_cpus: int | None = None) -> None:
        check_ray_request(use_ray, ray_address)
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise LearningError(f"num_cpus must be a positive integer, got {num_cpus!r}")
        self.use_ray = bool(use_ray or ray_address)
        self.ray_address = ray_address
        self.num_cpus = num_cpus
        self._ray: Any = None
        self._started = False

    @property
    def backend(self) -> str:
        """``"ray"`` or ``"in-process"``."""
        return "ray" if self.use_ray else "in-process"

    def _ray_module(self) -> Any:
        if self._ray is None:
            import ray

            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                if self.ray_address:
                    kwargs["address"] = self.ray_address
                elif self.num_cpus is not None:
                    kwargs["num_cpus"] = int(self.num_cpus)
                ray.init(**kwargs)
                self._started = True
            self._ray = ray
        return self._ray

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], labels: Sequence[str],
            shared: Mapping[str, Any] | None = None) -> list[Any]:
        """``[fn(*call, **shared) for call in calls]``, in order, on this executor's backend.

        ``fn`` must be a module-level function (Ray pickles it by name). ``shared`` keyword
        arguments are the same for every call and shipped to the cluster once.

        Raises:
            LearningError: a task failed; the message starts with its label.
        """
        shared = dict(shared or {})
        if not self.use_ray:
            out = []
            for call, label in zip(calls, labels):
                try:
                    out.append(fn(*call, **shared))
                except Exception as exc:
                    raise LearningError(f"{label} failed: {exc}") from exc
            return out
        ray = self._ray_module()
        task = ray.remote(num_cpus=1)(fn)
        refs_shared = {k: ray.put(v) for k, v in shared.items()}
        refs = [task.remote(*call, **refs_shared) for call in calls]
        out = []
        for ref, label in zip(refs, labels):
            try:
                out.append(ray.get(ref))
            except Exception as exc:  # RayTaskError wraps the task's own exception
                for other in refs:
                    ray.cancel(other)
                raise LearningError(f"{label} failed on Ray: {exc}") from exc
        return out

    def close(self) -> None:
        """Shut down the Ray runtime if this executor started it."""
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._ray, self._started = None, False

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, eq=False)
class FanoutResult:
    """Per-party outputs on the query set.

    Attributes:
        logits: (K, Q, C) float32 logits of party k on query q.
        votes: (K, Q) int64 argmax of each party (lowest class wins ties, as np.argmax).
        architectures: the architecture each party trained.
        backend: ``"ray"`` or ``"in-process"``.
        own_logits: for the parties asked for (``own_logits_for``), their logits on their own
            training data (k-center selection starts from these points).
    """

    logits: np.ndarray
    votes: np.ndarray
    architectures: tuple[str, ...]
    backend: str
    own_logits: dict[int, np.ndarray] = field(default_factory=dict)

    def histograms(self, num_classes: int | None = None, parties: Sequence[int] | None = None,
                   queries: np.ndarray | None = None) -> np.ndarray:
        """(Q, C) vote counts per query over ``parties`` (default all), the plaintext input of the
        noisy argmax; ``queries`` selects query columns."""
        c = self.logits.shape[2] if num_classes is None else int(num_classes)
        v = self.votes if parties is None else self.votes[list(parties)]
        if queries is not None:
            v = v[:, np.asarray(queries, dtype=np.int64)]
        if v.shape[1] == 0:
            return np.zeros((0, c), dtype=np.int64)
        out = np.zeros((v.shape[1], c), dtype=np.int64)
        for row in v:
            out[np.arange(v.shape[1]), row] += 1
        return out


def _train_one(party_id: int, training: Any, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int,
               own: bool, x_query: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """One party: train, then its logits on the queries (and on its own data when ``own``)."""
    from capc.learning.models import predict_logits

    model = training.train(x, y, num_classes=num_classes, seed=seed + party_id)
    logits = np.asarray(predict_logits(model, x_query), dtype=np.float32)
    return logits, (np.asarray(predict_logits(model, x), dtype=np.float32) if own else None)


def train_and_vote(parts: Sequence[tuple[np.ndarray, np.ndarray]], architectures: str | Sequence[str],
                   x_query: np.ndarray, *, num_classes: int = 10, epochs: int = 1, width: float = 1.0,
                   batch_size: int | None = None, model_config: Any = None, seed: int = 0,
                   own_logits_for: Collection[int] = (), use_ray: bool = False,
                   ray_address: str | None = None, num_cpus: int | None = None,
                   executor: Executor | None = None) -> FanoutResult:
    """Train one model per party on ``parts[k] = (x_k, y_k)`` and compute every party's votes.

    Args:
        parts: each party's private training data.
        architectures: a name, a comma-separated list or a sequence, assigned round robin
            (:func:`capc.learning.architectures.assign_architectures`).
        x_query: the queries (Q, H, W, C), scaled like the training data.
        num_classes, epochs, width, batch_size, model_config: every party's
            :class:`~capc.learning.party_training.PartyTraining` apart from its architecture.
        seed: base seed; party k trains with ``seed + k``.
        own_logits_for: parties whose logits on their own training data are returned too.
        use_ray, ray_address, num_cpus: the backend when no ``executor`` is given (see
            :class:`Executor`); a Ray runtime started here is shut down before returning.
        executor: run on this executor (and leave it open).

    Raises:
        LearningError: no parties, Ray asked for but missing, or a party's training failed (the
            message names the party and its architecture).
    """
    from capc.learning.architectures import assign_architectures
    from capc.learning.party_training import PartyTraining

    if len(parts) == 0:
        raise LearningError("train_and_vote needs at least one party's data")
    archs = assign_architectures(architectures, len(parts))
    base = PartyTraining(archs[0], epochs=epochs, width=width, batch_size=batch_size, model_config=model_config)
    own = {int(k) for k in own_logits_for}
    x_query = np.asarray(x_query, dtype=np.float32)
    calls = [(k, base.with_architecture(arch), np.asarray(x), np.asarray(y), num_classes, seed, k in own)
             for k, ((x, y), arch) in enumerate(zip(parts, archs))]
    labels = [f"party {k} ({arch})" for k, arch in enumerate(archs)]
    ex = executor if executor is not None else Executor(use_ray, ray_address, num_cpus)
    try:
        out = ex.map(_train_one, calls, labels, shared={"x_query": x_query})
    finally:
        if executor is None:
            ex.close()
    stacked = np.stack([lg for lg, _ in out])
    return FanoutResult(logits=stacked, votes=stacked.argmax(axis=2).astype(np.int64),
                        architectures=tuple(archs), backend=ex.backend,
                        own_logits={k: o for k, (_, o) in enumerate(out) if o is not None})
