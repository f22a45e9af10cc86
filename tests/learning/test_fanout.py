"""Fan-out of party training and voting: in-process and through a local Ray runtime agree."""

from __future__ import annotations

import numpy as np
import pytest

from capc.learning.errors import LearningError
from capc.learning.fanout import train_and_vote


def _parts(k=3, n=12, seed=0):
    rng = np.random.default_rng(seed)
    parts = [(rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)) for _ in range(k)]
    return parts, rng.random((5, 8, 8, 1), dtype=np.float32)


def test_in_process_votes_match_per_party_training():
    from capc.learning.architectures import train_architecture

    parts, xq = _parts()
    res = train_and_vote(parts, "VGG3,ResNet6", xq, num_classes=3, width=1 / 16, seed=7, use_ray=False)
    assert res.backend == "in-process" and res.architectures == ("VGG3", "ResNet6", "VGG3")
    assert res.votes.shape == (3, 5) and res.logits.shape == (3, 5, 3)
    # Party 2 alone, with its seed, gives the same logits: fan-out changes nothing but where it runs.
    own = train_architecture("VGG3", *parts[2], num_classes=3, seed=9, width=1 / 16)
    np.testing.assert_allclose(res.logits[2], own.predict(xq, verbose=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.histograms().sum(axis=1), [3] * 5)
    with pytest.raises(LearningError, match="at least one party"):
        train_and_vote([], "VGG3", xq, use_ray=False)
    with pytest.raises(LearningError, match="party 0 .VGG3. failed"):
        train_and_vote([(parts[0][0], parts[0][1] + 5)], "VGG3", xq, num_classes=3, use_ray=False)


@pytest.mark.slow
def test_ray_local_matches_in_process():
    pytest.importorskip("ray", reason="Ray not installed (pip install \"capc[ray]\")")
    parts, xq = _parts(k=2)
    local = train_and_vote(parts, "VGG3", xq, num_classes=3, width=1 / 16, seed=1, use_ray=False)
    viaray = train_and_vote(parts, "VGG3", xq, num_classes=3, width=1 / 16, seed=1, use_ray=True,
                            num_cpus=2)
    assert viaray.backend == "ray"
    np.testing.assert_array_equal(viaray.votes, local.votes)
    np.testing.assert_allclose(viaray.logits, local.logits, rtol=1e-5, atol=1e-5)
