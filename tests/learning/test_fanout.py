"""Fan-out of party training and voting: in-process and through a local Ray runtime agree."""

from __future__ import annotations

import numpy as np
import pytest

from capc.learning.errors import LearningError
from capc.learning.fanout import Executor, check_ray_request, train_and_vote


def _parts(k=3, n=12, seed=0):
    rng = np.random.default_rng(seed)
    parts = [(rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)) for _ in range(k)]
    return parts, rng.random((5, 8, 8, 1), dtype=np.float32)


def test_in_process_votes_match_per_party_training():
    from capc.learning.architectures import train_architecture

    parts, xq = _parts()
    res = train_and_vote(parts, "VGG3,ResNet6", xq, num_classes=3, width=1 / 16, seed=7, use_ray=False,
                         own_logits_for=[1])
    assert res.backend == "in-process" and res.architectures == ("VGG3", "ResNet6", "VGG3")
    assert res.votes.shape == (3, 5) and res.logits.shape == (3, 5, 3)
    assert set(res.own_logits) == {1} and res.own_logits[1].shape == (12, 3)
    # Party 2 alone, with its seed, gives the same logits: fan-out changes nothing but where it runs.
    own = train_architecture("VGG3", *parts[2], num_classes=3, seed=9, width=1 / 16)
    np.testing.assert_allclose(res.logits[2], own.predict(xq, verbose=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.histograms().sum(axis=1), [3] * 5)
    np.testing.assert_array_equal(res.histograms(parties=[0, 2], queries=[4, 1]).sum(axis=1), [2, 2])
    with pytest.raises(LearningError, match="at least one party"):
        train_and_vote([], "VGG3", xq, use_ray=False)
    with pytest.raises(LearningError, match="party 0 .VGG3. failed"):
        train_and_vote([(parts[0][0], parts[0][1] + 5)], "VGG3", xq, num_classes=3, use_ray=False)


def test_ray_requests_checked_up_front(monkeypatch):
    import importlib.util

    with pytest.raises(LearningError, match="use_ray=False"):
        check_ray_request(False, "auto")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(LearningError, match=r"Ray is not installed.*pip install"):
        Executor(use_ray=True)
    with pytest.raises(LearningError, match="num_cpus"):
        Executor(num_cpus=0)
    assert Executor().backend == "in-process"


def test_ray_local_runtime_matches_in_process():
    """One local Ray runtime (2 workers) runs a whole simulation (party models of two architecture
    families, votes, retraining seeds) exactly as in-process, and is shut down afterwards."""
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install \"capc[ray]\"; in the dev extras)")
    from capc.learning import simulation
    from capc.learning.simulation import SimulationConfig, run_learning_simulation

    cfg = SimulationConfig(n_parties=3, num_querying_parties=1, queries_per_party=15, budget_eps=15.0,
                           retrain_seeds=(11,), epochs=1, architectures="cryptonets,VGG3", width=1 / 16)
    sim_local = run_learning_simulation(cfg)
    simulation._PARTY_MODELS.clear()  # the Ray run must train its own party models
    assert not ray.is_initialized()
    with Executor(use_ray=True, num_cpus=2) as ex:
        sim_ray = run_learning_simulation(cfg, executor=ex)
        assert ray.is_initialized() and sim_ray["timings"]["party_models_reused"] == 0.0
    assert not ray.is_initialized()
    assert sim_ray["backend"] == "ray" and sim_local["backend"] == "in-process"
    assert sim_ray["architectures"] == ["cryptonets", "VGG3", "cryptonets"]
    [a], [b] = sim_local["parties"], sim_ray["parties"]
    for key in ("queries_answered", "epsilon_data_independent", "label_accuracy", "architecture"):
        assert a[key] == b[key]
    np.testing.assert_allclose(a["after"]["accuracy"], b["after"]["accuracy"], atol=1e-9)
    np.testing.assert_allclose(a["before"]["accuracy"], b["before"]["accuracy"], atol=1e-9)
