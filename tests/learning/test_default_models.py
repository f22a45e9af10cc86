"""The shipped default models (models/digits) and load_default_models' train-on-first-use path."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from capc.learning.cards import read_card  # noqa: E402
from capc.learning.datasets import load_dataset  # noqa: E402
from capc.learning.default_models import (SHIPPED_PARTIES, default_model_paths, load_default_models,  # noqa: E402
                                          model_paths, repo_models_dir, train_model_set)
from capc.learning.errors import ModelError  # noqa: E402
from capc.learning.export import ALLOWED_OPS, FrozenModel  # noqa: E402
from capc.learning.models import ModelConfig, load_model, predict_logits  # noqa: E402
from capc.learning.partition import iid_partition  # noqa: E402
from shipped_checks import check_files_and_accuracy  # noqa: E402

SHIPPED = repo_models_dir() / "digits"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("party", range(SHIPPED_PARTIES))
def test_shipped_model_matches_its_card(party, digits):
    paths = model_paths(SHIPPED, party)
    card = read_card(paths["card"])
    assert paths["card_md"].is_file()
    assert card["party"] == party and card["data"]["dataset"] == "digits"
    part = card["data"]["partition"]
    assert (part["scheme"], part["num_parties"], part["party"]) == ("iid", SHIPPED_PARTIES, party)
    expected = iid_partition(len(digits.y_train), SHIPPED_PARTIES)[party]
    assert part["index_range"] == [int(expected[0]), int(expected[-1]) + 1]
    acc, logits = check_files_and_accuracy(card, paths, digits)
    assert acc > 0.9
    assert card["evaluation"]["max_abs_logit_test"] <= 30.0  # CKKS headroom

    frozen = FrozenModel.load(paths["pb"])
    assert set(frozen.ops) <= ALLOWED_OPS
    np.testing.assert_allclose(frozen.predict_logits(digits.x_test[:64]), logits[:64], rtol=1e-4, atol=1e-4)


def test_default_paths_and_errors(tmp_path):
    paths = default_model_paths(3)
    assert [p.name for p in paths] == ["party-0.keras", "party-1.keras", "party-2.keras"]
    models = load_default_models(SHIPPED_PARTIES)
    assert len(models) == SHIPPED_PARTIES and all(m.output_shape == (None, 10) for m in models)
    with pytest.raises(ModelError, match="positive integer"):
        default_model_paths(0)
    with pytest.raises(ModelError, match="missing"):
        default_model_paths(2, tmp_path, train_missing=False)


def test_missing_default_model_is_retrained_identically(tmp_path, digits):
    """A missing shipped file is re-created from the same seed and partition: same predictions."""
    [path] = default_model_paths(1, tmp_path)
    assert path == tmp_path / "digits" / "party-0.keras"
    card = read_card(tmp_path / "digits" / "party-0.card.json")
    shipped = read_card(SHIPPED / "party-0.card.json")
    assert card["training"] == shipped["training"] and card["data"] == shipped["data"]
    fresh = predict_logits(load_default_models(1, tmp_path)[0], digits.x_test)
    ship = predict_logits(load_default_models(1)[0], digits.x_test)
    # Bit-identical on the machine that trained the shipped set; allow other CPUs' rounding.
    assert np.mean(fresh.argmax(1) == ship.argmax(1)) > 0.97


def test_more_parties_than_shipped_train_a_disjoint_set(tmp_path, monkeypatch):
    """Six parties: a whole 6-way set is trained (tiny epochs here) so party data stay disjoint."""
    import capc.learning.default_models as dm

    calls = []
    real = dm.train_model_set

    def tiny(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, config=ModelConfig(epochs=1), **kwargs)

    monkeypatch.setattr(dm, "train_model_set", tiny)
    monkeypatch.setenv("CAPC_CACHE_DIR", str(tmp_path))
    paths = dm.default_model_paths(6)
    assert len(paths) == 6 and all(p.parent == tmp_path / "models" / "digits-6p-iid" for p in paths)
    assert calls and calls[0][0][1] == 6
    ranges = [read_card(p.with_name(p.stem + ".card.json"))["data"]["partition"]["index_range"] for p in paths]
    assert ranges == [[i * 200, (i + 1) * 200] for i in range(6)]
    calls.clear()
    assert dm.default_model_paths(6) == paths and not calls  # cached: no retraining


def test_card_mismatch_is_refused(tmp_path):
    train_model_set("digits", 2, tmp_path / "digits", parties=[0], config=ModelConfig(epochs=1))
    # a 2-party model sitting where the 4-party default set belongs must not be used silently
    with pytest.raises(ModelError, match="expected"):
        default_model_paths(1, tmp_path)


@pytest.mark.parametrize("suffix", ["keras", "pb"])
def test_he_compiler_reads_shipped_models(suffix, digits):
    """Contract with capc.he: both file forms compile and give the model's logits in plaintext."""
    he = pytest.importorskip("capc.he")
    path = model_paths(SHIPPED, 1)[suffix]
    plan = he.compile_model(str(path))
    x = digits.x_test[:32]
    want = predict_logits(load_model(model_paths(SHIPPED, 1)["keras"]), x)
    assert plan.num_classes == 10 and tuple(plan.input_shape) == (8, 8, 1)
    np.testing.assert_allclose(plan.forward(x), want, rtol=1e-4, atol=1e-4)
