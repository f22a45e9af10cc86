"""Checks shared by the tests of the shipped model sets and of the training script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from capc.learning.cards import sha256_of
from capc.learning.metrics import accuracy
from capc.learning.models import load_model, predict_logits


def check_files_and_accuracy(card: dict[str, Any], paths: dict[str, Path], digits: Any
                             ) -> tuple[float, np.ndarray]:
    """The card's file hashes, sizes, held-out accuracy and largest |logit| match the files; returns
    the accuracy and the Keras model's logits on the test images."""
    for kind in ("keras", "pb"):
        assert card["files"][kind]["sha256"] == sha256_of(paths[kind])
        assert paths[kind].stat().st_size < 200_000  # kilobytes, commit-ready
    logits = predict_logits(load_model(paths["keras"]), digits.x_test)
    acc = accuracy(digits.y_eval, logits[digits.num_query_pool:])
    assert acc == pytest.approx(card["evaluation"]["accuracy"], abs=1e-4)
    assert float(np.abs(logits).max()) == pytest.approx(card["evaluation"]["max_abs_logit_test"], abs=1e-3)
    return acc, logits


def write_tiny_mnist(directory: Path) -> Path:
    """A 40 + 20 image ``mnist.npz`` (random pixels, labels 0..9 in turn) in ``directory``."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "mnist.npz", x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
             y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    return directory
