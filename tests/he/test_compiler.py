"""The model compiler: Keras objects, .keras files and frozen .pb graphs against TensorFlow's output."""

from __future__ import annotations

import numpy as np
import pytest

from capc.he import HEError, UnsupportedModelError, compile_model
from capc.he.plan import PublicPlan

from .conftest import small_model


def _inputs(n: int, shape=(8, 8, 1)) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, (n, *shape)).astype(np.float32)


def test_keras_object_matches_tensorflow(model):
    plan = compile_model(model)
    x = _inputs(20)
    ref = model(x, training=False).numpy()
    np.testing.assert_allclose(plan.forward(x), ref, atol=1e-5)
    assert plan.depth == 5 and plan.num_classes == 10 and plan.input_shape == (8, 8, 1)
    # BN folded into the conv: stages are linear, square, linear, square, linear
    assert [s[0] for s in plan.public_plan.stage_shapes] == ["linear", "square"] * 2 + ["linear"]


def test_polynomial_activation_costs_one_level():
    m = small_model(polynomial=True)
    plan = compile_model(m)
    x = _inputs(10)
    np.testing.assert_allclose(plan.forward(x), m(x).numpy(), atol=1e-5)
    assert plan.depth == 5


def test_keras_file_round_trip(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    plan = compile_model(str(path))
    x = _inputs(5)
    np.testing.assert_allclose(plan.forward(x), model(x).numpy(), atol=1e-5)


def test_frozen_graphdef(model, tmp_path):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(
        tf.TensorSpec([None, 8, 8, 1], tf.float32))
    graph = convert_variables_to_constants_v2(fn).graph.as_graph_def()
    path = tmp_path / "m.pb"
    path.write_bytes(graph.SerializeToString())
    plan = compile_model(str(path))
    x = _inputs(5)
    np.testing.assert_allclose(plan.forward(x), model(x).numpy(), atol=1e-5)
    assert plan.depth == 5


def test_valid_padding_avgpool_and_tf_flatten_order():
    import keras

    from capc.he.layers import Square

    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((9, 7, 2)), keras.layers.Conv2D(3, (3, 2), strides=(2, 1), padding="valid"),
                          keras.layers.AveragePooling2D(2, padding="same"), Square(),
                          keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    plan = compile_model(m)
    x = _inputs(6, (9, 7, 2))
    logits = plan.forward(x)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, m(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("layer, word", [
    ("relu", "relu6"), ("maxpool", "max"), ("lambda", "lambda")])
def test_unsupported_layers_are_named(layer, word):
    import keras

    # plain ReLU and MaxPooling2D compile to hybrid plans (tests/he/test_compiler_hybrid.py)
    layers = {"relu": keras.layers.ReLU(max_value=6.0, name="my_relu"),
              "maxpool": keras.layers.GlobalMaxPooling2D(name="my_pool"),
              "lambda": keras.layers.Lambda(lambda t: t * 2, name="my_lambda")}
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), layers[layer],
                          keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(UnsupportedModelError) as err:
        compile_model(m)
    assert f"my_{layer if layer != 'maxpool' else 'pool'}" in str(err.value)
    assert word in str(err.value).lower()


def test_dense_sigmoid_activation_refused():
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid", name="d")])
    with pytest.raises(UnsupportedModelError, match="'d'.*sigmoid"):
        compile_model(m)


def test_high_degree_polynomial_refused():
    import keras

    from capc.he.layers import Polynomial

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), Polynomial([0, 1, 0, 1], name="cube"),
                          keras.layers.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="cube.*degree 3"):
        compile_model(m)


def test_bad_paths(tmp_path):
    with pytest.raises(HEError, match="not found"):
        compile_model(str(tmp_path / "missing.keras"))
    bad = tmp_path / "x.pb"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(HEError):
        compile_model(str(bad))
    with pytest.raises(HEError, match="keras.Model"):
        compile_model(42)


def test_public_plan_round_trip_has_no_weights(model):
    plan = compile_model(model)
    blob = plan.public_plan.to_bytes()
    back = PublicPlan.from_bytes(blob)
    assert back.fingerprint == plan.fingerprint
    w = plan.stages[0].weight.data
    assert not any(repr(float(v))[:8].encode() in blob for v in w[:5])
    with pytest.raises(HEError):
        PublicPlan.from_bytes(b"{not json")
