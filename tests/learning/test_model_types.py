"""Model types (layouts) of the default model sets: the shipped cryptonets-relu and mlp sets, their
cards and frozen graphs, layout selection, and refusal of unknown types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from capc.learning.cards import read_card  # noqa: E402
from capc.learning.datasets import load_dataset  # noqa: E402
from capc.learning.default_models import (MODEL_TYPES, SHIPPED_PARTIES, default_model_paths,  # noqa: E402
                                          load_default_models, model_paths, repo_models_dir, set_name,
                                          train_model_set)
from capc.learning.errors import ExportError, ModelError  # noqa: E402
from capc.learning.export import ALLOWED_OPS, FrozenModel, freeze_model  # noqa: E402
from capc.learning.model_types import check_model_type  # noqa: E402
from capc.learning.models import (TRAINING_FIELDS, ModelConfig, build_party_model, keras, load_model,  # noqa: E402
                                  predict_logits, train_party_model)
from capc.learning.partition import iid_partition  # noqa: E402
from shipped_checks import check_files_and_accuracy, write_tiny_mnist  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_models.py"
RELU_TYPES = ("cryptonets-relu", "mlp")
#: Lowest per-party held-out accuracy measured when the sets were trained (0.9529 and 0.9226 over
#: the 297 evaluation images), minus a margin of about two images' worth and some CPU slack.
ACCURACY_FLOOR = {"cryptonets-relu": 0.93, "mlp": 0.90}
#: Layer types of each shipped layout on 8x8 digits, in order (see models/README.md).
LAYER_TYPES = {
    "cryptonets-relu": ["Conv2D", "ReLU", "Flatten", "Dense", "ReLU", "Dense"],
    "mlp": ["Conv2D", "ReLU", "MaxPooling2D", "Conv2D", "ReLU", "Flatten", "Dense", "ReLU", "Dense"],
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture
def repo_models(monkeypatch):
    """Make the default models come from this source tree's models/ (not $CAPC_MODELS_DIR)."""
    monkeypatch.delenv("CAPC_MODELS_DIR", raising=False)
    return repo_models_dir()


def test_model_type_names():
    assert MODEL_TYPES == ("cryptonets", "cryptonets-relu", "mlp")
    assert check_model_type("CryptoNets_ReLU") == "cryptonets-relu"
    assert set_name("digits", 4) == "digits"  # the existing set keeps its name
    assert set_name("digits", 4, model_type="mlp") == "digits-mlp"
    assert set_name("digits", 4, "iid", "cryptonets-relu") == "digits-cryptonets-relu"
    assert set_name("digits", 10, "weak", "mlp") == "digits-mlp-10p-weak"
    assert set_name("mnist", 4, model_type="cryptonets") == "mnist"


@pytest.mark.parametrize("model_type", RELU_TYPES)
@pytest.mark.parametrize("party", range(SHIPPED_PARTIES))
def test_shipped_relu_set_matches_its_cards(model_type, party, digits, repo_models):
    paths = model_paths(repo_models / f"digits-{model_type}", party)
    card = read_card(paths["card"])
    assert paths["card_md"].is_file() and f"`{model_type}`" in paths["card_md"].read_text()
    assert card["name"] == f"digits-{model_type}/party-{party}" and card["party"] == party
    assert card["model"]["model_type"] == model_type
    assert [layer["type"] for layer in card["model"]["layers"]] == LAYER_TYPES[model_type]
    assert card["data"]["dataset"] == "digits" and card["model"]["input_shape"] == [None, 8, 8, 1]
    part = card["data"]["partition"]
    assert (part["scheme"], part["num_parties"], part["party"]) == ("iid", SHIPPED_PARTIES, party)
    expected = iid_partition(len(digits.y_train), SHIPPED_PARTIES)[party]
    assert part["index_range"] == [int(expected[0]), int(expected[-1]) + 1]  # same split as models/digits
    shipped_cryptonets = read_card(model_paths(repo_models / "digits", party)["card"])
    assert card["data"] == shipped_cryptonets["data"]
    assert card["training"]["seed"] == party == shipped_cryptonets["training"]["seed"]
    assert set(card["training"]) == {"seed", "optimizer", "loss", *TRAINING_FIELDS}
    assert card["training"]["l2"] > 0 and card["training"]["logit_l2"] > 0
    _, logits = check_files_and_accuracy(card, paths, digits)
    assert card["evaluation"]["accuracy"] >= ACCURACY_FLOOR[model_type]
    assert card["evaluation"]["max_abs_logit_test"] <= 16.0  # moderate logits (the L2 penalties)

    frozen = FrozenModel.load(paths["pb"])
    ops = set(frozen.ops)
    assert ops <= ALLOWED_OPS and "Relu" in ops and ("MaxPool" in ops) == (model_type == "mlp")
    assert "Square" not in ops
    np.testing.assert_allclose(frozen.predict_logits(digits.x_test), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_default_model_paths_select_the_shipped_set(model_type, repo_models):
    folder = "digits" if model_type == "cryptonets" else f"digits-{model_type}"
    paths = default_model_paths(SHIPPED_PARTIES, model_type=model_type, train_missing=False)
    assert paths == [repo_models / folder / f"party-{i}.keras" for i in range(SHIPPED_PARTIES)]
    assert default_model_paths(2, model_type=model_type, train_missing=False) == paths[:2]


def test_load_default_models_by_type(repo_models):
    [mlp] = load_default_models(1, model_type="mlp", train_missing=False)
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in mlp.layers)
    [relu] = load_default_models(1, model_type="cryptonets-relu", train_missing=False)
    assert any(isinstance(layer, keras.layers.ReLU) for layer in relu.layers)


def test_unknown_model_type_is_refused(tmp_path):
    names = r"cryptonets, cryptonets-relu, mlp"
    for call in (lambda: default_model_paths(4, model_type="resnet"),
                 lambda: default_model_paths(4, tmp_path, model_type="relu"),
                 lambda: load_default_models(1, model_type=""),
                 lambda: set_name("digits", 4, model_type="vgg"),
                 lambda: train_model_set("digits", 4, tmp_path, model_type="cnn"),
                 lambda: build_party_model("square", (8, 8, 1)),
                 lambda: train_party_model(np.zeros((2, 8, 8, 1)), np.array([0, 1]), model_type="x"),
                 lambda: check_model_type(None)):
        with pytest.raises(ModelError, match=f"unknown model type .*choose one of {names}"):
            call()
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_cryptonets_only_settings_are_refused_for_relu_layouts(tmp_path):
    with pytest.raises(ModelError, match="hidden only apply to model type 'cryptonets'"):
        train_model_set("digits", 4, tmp_path, config=ModelConfig(hidden=64), model_type="mlp")
    with pytest.raises(ModelError, match="filters"):
        build_party_model("cryptonets-relu", (8, 8, 1), config=ModelConfig(filters=8))


def test_layouts_at_8x8_and_28x28():
    from capc.learning.architectures import build_cryptonets_layout

    def shapes(model):
        return [tuple(layer.output.shape[1:]) for layer in model.layers[1:]]

    relu = build_party_model("cryptonets-relu", (8, 8, 1))
    assert shapes(relu) == [(4, 4, 5), (4, 4, 5), (80,), (100,), (100,), (10,)]
    # mlp exactly as the original (stride 2) is degenerate at 8x8: one pixel per channel after the pool
    exact = build_cryptonets_layout("mlp", (8, 8, 1))
    assert shapes(exact)[2] == (1, 1, 5) and shapes(exact)[5] == (50,)
    mlp = build_party_model("mlp", (8, 8, 1))  # the shipped variant: convolution stride 1
    assert shapes(mlp) == [(8, 8, 5), (8, 8, 5), (2, 2, 5), (2, 2, 50), (2, 2, 50), (200,), (100,), (100,), (10,)]
    original = build_cryptonets_layout("mlp", (28, 28, 1))
    assert [w.shape for w in mlp.get_weights()] == [w.shape for w in original.get_weights()]
    # on 28x28 images the layouts are exactly the original's (the penalties add no layer or weight)
    for name in ("cryptonets-relu", "mlp"):
        ours, theirs = build_party_model(name, (28, 28, 1)), build_cryptonets_layout(name, (28, 28, 1))
        assert shapes(ours) == shapes(theirs)
        assert [type(a) for a in ours.layers] == [type(b) for b in theirs.layers]
        assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
        assert [layer.get_config().get("strides") for layer in ours.layers] == \
            [layer.get_config().get("strides") for layer in theirs.layers]


def test_tiny_mlp_set_trains_exports_and_is_checked(tmp_path, digits):
    """One party, one epoch (a few seconds): files, card, .keras == .pb, and the type check."""
    out = tmp_path / "digits-mlp"
    [card] = train_model_set("digits", 4, out, parties=[1], config=ModelConfig(epochs=1), model_type="mlp")
    paths = model_paths(out, 1)
    assert all(p.is_file() for p in paths.values())
    assert card["model"]["model_type"] == "mlp" and card["training"]["epochs"] == 1
    assert card["training"]["seed"] == 1 and card["data"]["partition"]["index_range"] == [300, 600]
    x = digits.x_test[:50]
    np.testing.assert_allclose(FrozenModel.load(paths["pb"]).predict_logits(x),
                               predict_logits(load_model(paths["keras"]), x), rtol=1e-4, atol=1e-4)
    # a set of another type where the mlp set belongs is refused, not used silently
    train_model_set("digits", 4, out, parties=[0], config=ModelConfig(epochs=1), model_type="cryptonets-relu")
    with pytest.raises(ModelError, match="model type .*cryptonets-relu.*expected.*mlp"):
        default_model_paths(1, tmp_path, model_type="mlp", train_missing=False)


def test_export_refuses_non_plain_relu():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(keras.layers.ReLU(max_value=6.0)(inputs))
    with pytest.raises(ExportError, match="plain ReLU"):
        freeze_model(keras.Model(inputs, keras.layers.Dense(10)(h)))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


def test_script_refuses_bad_model_type_and_cryptonets_only_flags(tmp_path):
    res = _run("--model_type", "resnet", "--out_dir", str(tmp_path))
    assert res.returncode == 2 and "cryptonets-relu" in res.stderr and "mlp" in res.stderr
    res = _run("--model_type", "mlp", "--hidden", "64", "--out_dir", str(tmp_path))
    assert res.returncode == 2 and "only apply to model type 'cryptonets'" in res.stderr
    assert "Traceback" not in res.stderr and not any(tmp_path.iterdir())


def test_script_trains_the_original_mlp_on_28x28(tmp_path):
    """With MNIST files the script builds the original 28x28 layout (stride 2, flatten 200)."""
    data = write_tiny_mnist(tmp_path / "data")
    res = _run("--model_type", "mlp", "--data_dir", str(data), "--num_query_pool", "10", "--n_parties", "2",
               "--parties", "0", "--epochs", "1", "--out_dir", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "mlp on mnist" in res.stdout and "eval acc" in res.stdout
    card = json.loads((tmp_path / "out" / "mnist-mlp-2p-iid" / "party-0.card.json").read_text())
    assert card["model"]["model_type"] == "mlp" and card["model"]["input_shape"] == [None, 28, 28, 1]
    convs = [layer for layer in card["model"]["layers"] if layer["type"] == "Conv2D"]
    assert [c["strides"] for c in convs] == [[2, 2], [2, 2]] and [c["padding"] for c in convs] == ["same"] * 2
    assert card["model"]["num_params"] == 27385


@pytest.mark.slow
@pytest.mark.parametrize("model_type", RELU_TYPES)
def test_missing_shipped_relu_model_is_retrained_identically(model_type, tmp_path, digits, repo_models):
    """A missing file of a shipped ReLU set is re-created from the same seed and partition (~10 s)."""
    [path] = default_model_paths(1, tmp_path, model_type=model_type)
    assert path == tmp_path / f"digits-{model_type}" / "party-0.keras"
    shipped = model_paths(repo_models / f"digits-{model_type}", 0)
    card, ship_card = read_card(path.with_name("party-0.card.json")), read_card(shipped["card"])
    assert card["training"] == ship_card["training"] and card["data"] == ship_card["data"]
    fresh = predict_logits(load_model(path), digits.x_test)
    ship = predict_logits(load_model(shipped["keras"]), digits.x_test)
    # Bit-identical on the machine that trained the shipped set; allow other CPUs' rounding.
    assert np.mean(fresh.argmax(1) == ship.argmax(1)) > 0.97
