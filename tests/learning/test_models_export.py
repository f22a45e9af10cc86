"""Models: seeded determinism, .keras and frozen .pb round trips, the frozen graph's op contract."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from capc.learning.datasets import load_dataset  # noqa: E402
from capc.learning.export import (ALLOWED_OPS, INPUT_NODE, OUTPUT_NODE, ExportError, FrozenModel,  # noqa: E402
                                  check_graph_ops, export_frozen_graph, freeze_model)
from capc.learning.layers import Square  # noqa: E402
from capc.learning.models import (ModelConfig, ModelError, build_cryptonets_model, load_model,  # noqa: E402
                                  predict_logits, save_model, train_party_model)

TINY = ModelConfig(epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny_model(digits):
    return train_party_model(digits.x_train[:300], digits.y_train[:300], seed=3, config=TINY)


def test_architecture_for_input_sizes():
    small = build_cryptonets_model((8, 8, 1))
    assert [type(l).__name__ for l in small.layers] == ["Conv2D", "Square", "Flatten", "Dense", "Square", "Dense"]
    assert small.layers[0].kernel_size == (3, 3) and small.layers[0].strides == (1, 1)
    assert small.output_shape == (None, 10) and small.layers[3].units == 32
    mnist = build_cryptonets_model((28, 28, 1))
    assert mnist.layers[0].kernel_size == (5, 5) and mnist.layers[0].strides == (2, 2)
    assert mnist.layers[2].output.shape[-1] == 12 * 12 * 5 and mnist.layers[3].units == 100
    with pytest.raises(ModelError, match="smaller than"):
        build_cryptonets_model((2, 2, 1))
    with pytest.raises(ModelError, match="input_shape"):
        build_cryptonets_model((8, 8))


def test_square_layer_computes_x_squared():
    x = np.array([[-3.0, 0.5, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(Square()(x)), x * x)


def test_same_seed_same_weights_different_seed_differs(digits, tiny_model):
    again = train_party_model(digits.x_train[:300], digits.y_train[:300], seed=3, config=TINY)
    for a, b in zip(tiny_model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = train_party_model(digits.x_train[:300], digits.y_train[:300], seed=4, config=TINY)
    assert any(not np.array_equal(a, b) for a, b in zip(tiny_model.get_weights(), other.get_weights()))


def test_training_rejects_bad_input(digits):
    with pytest.raises(ModelError, match="labels must lie"):
        train_party_model(digits.x_train[:10], np.full(10, 12), config=TINY)
    with pytest.raises(ModelError, match="one label per image"):
        train_party_model(digits.x_train[:10], digits.y_train[:9], config=TINY)
    with pytest.raises(ModelError, match="NHWC"):
        train_party_model(digits.x_train[:10, :, :, 0], digits.y_train[:10], config=TINY)


def test_keras_and_pb_round_trip(tmp_path, digits, tiny_model):
    x = digits.x_test[:16]
    want = predict_logits(tiny_model, x)
    k = load_model(save_model(tiny_model, tmp_path / "m.keras"))
    np.testing.assert_allclose(predict_logits(k, x), want, rtol=1e-6, atol=1e-6)
    assert getattr(k, "optimizer", None) is None  # no optimizer state in the file
    pb = load_model(export_frozen_graph(tiny_model, tmp_path / "m.pb"))
    assert isinstance(pb, FrozenModel)
    np.testing.assert_allclose(pb.predict_logits(x), want, rtol=1e-5, atol=1e-5)
    assert pb.input_shape == (-1, 8, 8, 1)


def test_frozen_graph_contract(tiny_model):
    gd = freeze_model(tiny_model)
    ops = [n.op for n in gd.node]
    assert set(ops) <= ALLOWED_OPS
    assert {"Conv2D", "Square", "Reshape", "MatMul", "BiasAdd"} <= set(ops)
    names = {n.name: n for n in gd.node}
    assert names[INPUT_NODE].op == "Placeholder"
    assert [d.size for d in names[INPUT_NODE].attr["shape"].shape.dim] == [-1, 8, 8, 1]
    assert names[OUTPUT_NODE].op == "Identity"
    reshape = next(n for n in gd.node if n.op == "Reshape")
    assert names[reshape.input[1].split(":")[0]].op == "Const"  # static flatten, no Shape/Pack


def test_export_refuses_unsupported_layers_and_ops(tmp_path):
    relu = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(4, activation="relu", name="hidden")])
    with pytest.raises(ExportError, match="'hidden'"):
        export_frozen_graph(relu, tmp_path / "r.pb")
    pooled = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.AveragePooling2D(2, name="pool"),
                               keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ExportError, match="'pool' \\(AveragePooling2D\\)"):
        freeze_model(pooled)
    # ReLU and max-pooling layers are part of the contract (the cryptonets-relu / mlp layouts)
    maxpooled = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.MaxPooling2D(name="pool"),
                                  keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3)])
    assert {"MaxPool", "Relu"} <= {n.op for n in freeze_model(maxpooled).node}
    with pytest.raises(ExportError, match=".pb"):
        export_frozen_graph(build_cryptonets_model((8, 8, 1)), tmp_path / "m.bin")

    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.node.add(name=INPUT_NODE, op="Placeholder")
    gd.node.add(name="r", op="Sigmoid", input=[INPUT_NODE])
    gd.node.add(name=OUTPUT_NODE, op="Identity", input=["r"])
    with pytest.raises(ExportError, match="r \\(Sigmoid\\)"):
        check_graph_ops(gd)
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xff not a graph")
    with pytest.raises(ModelError.__mro__[1]):  # LearningError, base of ExportError and ModelError
        load_model(bad)


def test_load_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "none.keras")
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(ModelError, match="expected a '.keras' or '.pb'"):
        load_model(tmp_path / "x.h5")
    (tmp_path / "broken.keras").write_bytes(b"PK junk")
    with pytest.raises(ModelError, match="cannot load"):
        load_model(tmp_path / "broken.keras")


def test_fallback_layers_load_shipped_model_without_capc_he():
    """Without capc.he (e.g. no TenSEAL), capc.learning's own Square loads the same models."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; sys.modules['capc.he'] = None\n"  # makes 'import capc.he...' raise ImportError
        "import numpy as np\n"
        "from capc.learning.layers import Square\n"
        "assert Square.__module__ == 'capc.learning.layers', Square.__module__\n"
        "from capc.learning.models import load_model, predict_logits\n"
        "from capc.learning.datasets import load_dataset\n"
        "m = load_model('models/digits/party-0.keras')\n"
        "pb = load_model('models/digits/party-0.pb')\n"
        "x = load_dataset('digits').x_test[:8]\n"
        "np.testing.assert_allclose(predict_logits(m, x), predict_logits(pb, x), rtol=1e-4, atol=1e-4)\n"
        "print('fallback-ok')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fallback-ok" in res.stdout
