"""The compiler on ReLU / max-pooling models (hybrid plans) and capc.he.hybrid's build_plan / GcLayer.

The frozen graphs mimic the original CaPC demo's (TF1 graph-mode Keras naming): a Placeholder
``input`` [?, 28, 28, 1], scoped names (``convd1_1/Conv2D``, ``convd1_1/Relu``, ...) and the logits in
``output/BiasAdd`` with no Identity after it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from capc.he import HEError, Plan, UnsupportedModelError, compile_model
from capc.he.compiler import avgpool_matrix, maxpool_windows
from capc.he.hybrid import (GcLayer, HybridPlan, PublicHybridPlan, RawMaxPool, RawRelu, build_plan,
                            public_plan_from_bytes)
from capc.he.plan import RawLinear, RawPoly

DEMO_SHAPE = (28, 28, 1)


# ----------------------------------------------------------------------------- helpers
def _inputs(n: int, shape=DEMO_SHAPE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def _scoped(tf, scope: str, fn):
    with tf.name_scope(scope):
        return fn()


def demo_graph(layout: str, seed: int = 0, shape=DEMO_SHAPE):
    """A GraphDef of one of the demo's layouts with random float32 weights, built from graph ops so the
    node names are exactly the demo's (constants are Const nodes: the graph is already frozen)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def const(*dims, name):
        fan_in = int(np.prod(dims[:-1])) if len(dims) > 1 else 4
        return tf.constant(rng.normal(0, 1 / np.sqrt(fan_in), dims).astype(np.float32), name=name)

    def act(t):
        return tf.square(t, name="Square") if layout == "cryptonets" else tf.nn.relu(t, name="Relu")

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, *shape], name="input")
        if layout in ("cryptonets", "cryptonets-relu"):
            y = _scoped(tf, "convd1_1", lambda: act(tf.nn.bias_add(
                tf.nn.conv2d(x, const(5, 5, 1, 5, name="kernel"), 2, "SAME", name="Conv2D"),
                const(5, name="bias"), name="BiasAdd")))
            y = tf.reshape(y, [-1, 980], name="Reshape")
            y = _scoped(tf, "squash_fc_1", lambda: act(tf.nn.bias_add(
                tf.linalg.matmul(y, const(980, 100, name="kernel"), name="MatMul"),
                const(100, name="bias"), name="BiasAdd")))
        elif layout == "mlp":
            y = _scoped(tf, "convd1_1", lambda: tf.nn.relu(
                tf.nn.conv2d(x, const(5, 5, 1, 5, name="kernel"), 2, "SAME", name="Conv2D"), name="Relu"))
            y = _scoped(tf, "max_pooling2d", lambda: tf.nn.max_pool2d(y, 3, 3, "VALID", name="MaxPool"))
            y = _scoped(tf, "convd2_1", lambda: tf.nn.relu(
                tf.nn.conv2d(y, const(5, 5, 5, 50, name="kernel"), 2, "SAME", name="Conv2D"), name="Relu"))
            y = tf.reshape(y, [-1, 200], name="Reshape")
            y = _scoped(tf, "fc_1", lambda: tf.nn.relu(
                tf.linalg.matmul(y, const(200, 100, name="kernel"), name="MatMul"), name="Relu"))
        else:
            raise ValueError(layout)
        _scoped(tf, "output", lambda: tf.nn.bias_add(
            tf.linalg.matmul(y, const(100, 10, name="kernel"), name="MatMul"),
            const(10, name="bias"), name="BiasAdd"))
    return g.as_graph_def()


def as_float64(graph_def):
    """The same graph computing in float64 (float32 weights widened exactly), so TensorFlow's own
    evaluation of the file's graph can be compared with the float64 plan to 1e-9."""
    import tensorflow as tf

    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    f32, f64 = tf.float32.as_datatype_enum, tf.float64.as_datatype_enum
    for node in out.node:
        for attr in node.attr.values():
            if attr.type == f32:
                attr.type = f64
        if node.op == "Const" and node.attr["value"].tensor.dtype == f32:
            value = tf.make_ndarray(node.attr["value"].tensor).astype(np.float64)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return out


def run_graph(graph_def, x: np.ndarray, output: str = "output/BiasAdd") -> np.ndarray:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run(f"{output}:0", feed_dict={"input:0": x})


def write_pb(tmp_path, graph_def, name: str = "m.pb") -> str:
    path = tmp_path / name
    path.write_bytes(graph_def.SerializeToString())
    return str(path)


def assert_close_rel(got: np.ndarray, ref: np.ndarray, rel: float) -> None:
    np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * float(np.abs(ref).max()))


# ----------------------------------------------------------------------------- maxpool_windows
@pytest.mark.parametrize("shape, pool, strides, padding", [
    ((14, 14, 5), (3, 3), (3, 3), "VALID"),
    ((8, 8, 2), (2, 2), (2, 2), "VALID"),
    ((6, 5, 2), (3, 2), (3, 1), "VALID"),
    ((7, 7, 1), (2, 2), (2, 2), "SAME"),
    ((9, 7, 3), (3, 3), (2, 2), "SAME"),
    ((4, 4, 3), (3, 3), (1, 1), "SAME"),
    ((5, 6, 2), (2, 3), (1, 2), "SAME"),
    ((3, 5, 2), (4, 4), (4, 4), "SAME"),
    ((9, 9, 2), (2, 2), (3, 3), "same"),
])
def test_maxpool_windows_match_tensorflow(shape, pool, strides, padding):
    import tensorflow as tf

    x = np.random.default_rng(7).normal(size=(3, *shape)).astype(np.float32)
    windows, out_shape = maxpool_windows(shape, pool, strides, padding)
    ref = tf.nn.max_pool2d(x, pool, strides, padding.upper()).numpy()
    assert windows.dtype == np.int64 and windows.shape == (int(np.prod(out_shape)), pool[0] * pool[1])
    assert out_shape == ref.shape[1:]
    np.testing.assert_array_equal(x.reshape(3, -1)[:, windows].max(-1), ref.reshape(3, -1))
    # each window holds exactly the real inputs it covers (the cells average pooling divides by)
    avg, _ = avgpool_matrix(shape, pool, strides, padding)
    for i in range(windows.shape[0]):
        assert set(windows[i].tolist()) == set(avg[i].indices.tolist())


def test_maxpool_windows_refuse_explicit_padding():
    with pytest.raises(HEError, match="SAME"):
        maxpool_windows((4, 4, 1), (2, 2), (2, 2), ((0, 1), (0, 1)))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- demo frozen graphs
def test_demo_graph_names_and_no_identity():
    gd = demo_graph("cryptonets-relu")
    names = {n.name: n.op for n in gd.node}
    assert names["input"] == "Placeholder" and names["output/BiasAdd"] == "BiasAdd"
    assert names["convd1_1/Relu"] == "Relu" and "Identity" not in names.values()
    assert gd.node[-1].name == "output/BiasAdd"
    assert {n.name: n.op for n in demo_graph("mlp").node}["max_pooling2d/MaxPool"] == "MaxPool"


@pytest.fixture(scope="module")
def demo_plans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    out = {}
    for layout in ("cryptonets", "cryptonets-relu", "mlp"):
        gd = demo_graph(layout)
        out[layout] = (gd, compile_model(write_pb(tmp, gd, f"{layout}.pb")))
    return out


@pytest.mark.parametrize("layout", ["cryptonets", "cryptonets-relu", "mlp"])
def test_demo_graph_forward_matches_tensorflow(demo_plans, layout):
    gd, plan = demo_plans[layout]
    x = _inputs(6)
    ref = run_graph(as_float64(gd), x.astype(np.float64))
    assert_close_rel(plan.forward(x.astype(np.float64)), ref, 1e-9)
    assert_close_rel(plan.forward(x[0]), ref[0], 1e-9)  # one input gives [C]
    # the float32 graph itself agrees to float32 precision
    assert_close_rel(plan.forward(x), run_graph(gd, x), 1e-5)
    assert plan.layers[-1].startswith("output/BiasAdd: BiasAdd")


def test_demo_cryptonets_is_a_plain_plan(demo_plans):
    plan = demo_plans["cryptonets"][1]
    assert isinstance(plan, Plan) and plan.depth == 5
    assert [s[0] for s in plan.public_plan.stage_shapes] == ["linear", "square"] * 2 + ["linear"]


def test_demo_cryptonets_relu_structure(demo_plans):
    plan = demo_plans["cryptonets-relu"][1]
    assert isinstance(plan, HybridPlan) and len(plan.segments) == 3
    assert [(g.kind, g.size_in, g.size_out) for g in plan.gc_layers] == [("relu", 980, 980),
                                                                         ("relu", 100, 100)]
    assert [s.public_plan.stage_shapes for s in plan.segments] == [
        (("linear", 980, 784),), (("linear", 100, 980),), (("linear", 10, 100),)]
    assert plan.depth == 1 and plan.input_shape == DEMO_SHAPE and plan.num_classes == 10


def test_demo_mlp_structure(demo_plans):
    plan = demo_plans["mlp"][1]
    assert isinstance(plan, HybridPlan)
    # conv; conv; dense; dense -- each one affine stage on a fresh ciphertext
    assert [s.public_plan.stage_shapes for s in plan.segments] == [
        (("linear", 980, 784),), (("linear", 200, 80),), (("linear", 100, 200),), (("linear", 10, 100),)]
    pool, r1, r2 = plan.gc_layers
    assert (pool.kind, pool.window, pool.relu, pool.size_in, pool.size_out) == ("maxpool", 9, True, 980, 80)
    np.testing.assert_array_equal(pool.windows, maxpool_windows((14, 14, 5), (3, 3), (3, 3), "VALID")[0])
    assert [(g.kind, g.size_in) for g in (r1, r2)] == [("relu", 200), ("relu", 100)]


def test_public_hybrid_plan_round_trip_has_only_structure(demo_plans):
    plan = demo_plans["mlp"][1]
    blob = plan.public_plan.to_bytes()
    back = public_plan_from_bytes(blob)
    assert isinstance(back, PublicHybridPlan) and back.fingerprint == plan.fingerprint
    assert back.depth == plan.depth and back.input_shape == DEMO_SHAPE
    np.testing.assert_array_equal(back.gc_layers[0].windows, plan.gc_layers[0].windows)
    d = json.loads(blob)
    assert set(d) == {"format", "segments", "gc_layers"}
    for seg in d["segments"]:
        # first_conv: the first map's convolution geometry (shapes, strides, padding), no weights
        assert set(seg) == {"format", "input_shape", "num_classes", "stage_shapes", "first_indptr",
                            "first_indices", "first_conv"}
        assert seg["first_conv"] is None or all(isinstance(v, int) for v in seg["first_conv"])
    assert [set(g) for g in d["gc_layers"]] == [{"size_in", "relu", "windows", "window"},
                                                {"size_in", "relu"}, {"size_in", "relu"}]
    with pytest.raises(HEError):
        public_plan_from_bytes(b"{not json")


def test_graph_with_softmax_after_output_biasadd(tmp_path):
    import tensorflow as tf

    gd = demo_graph("cryptonets-relu", seed=3)
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(gd, name="")
        tf.nn.softmax(g.get_tensor_by_name("output/BiasAdd:0"), name="probs")
    plan = compile_model(write_pb(tmp_path, g.as_graph_def()))
    x = _inputs(3)
    assert_close_rel(plan.forward(x), run_graph(as_float64(gd), x.astype(np.float64)), 1e-9)
    assert any("softmax dropped" in ln for ln in plan.layers)


def test_graph_with_two_outputs_refused(tmp_path):
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(demo_graph("cryptonets-relu"), name="")
        tf.identity(g.get_tensor_by_name("convd1_1/Relu:0"), name="features")
    with pytest.raises(UnsupportedModelError, match="several outputs.*features"):
        compile_model(write_pb(tmp_path, g.as_graph_def()))


def _tiny_graph(build):
    """input [?, 6, 6, 2] -> build(x) -> Reshape -> MatMul -> output/BiasAdd."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 2], name="input")
        y = build(tf, x)
        n = int(np.prod(y.shape[1:]))
        y = tf.reshape(y, [-1, n])
        with tf.name_scope("output"):
            tf.nn.bias_add(tf.linalg.matmul(y, tf.ones([n, 3]), name="MatMul"), tf.zeros([3]), name="BiasAdd")
    return g.as_graph_def()


@pytest.mark.parametrize("build, node, word", [
    (lambda tf, x: tf.nn.relu6(x, name="act"), "act", "relu6"),
    (lambda tf, x: tf.nn.leaky_relu(x, 0.1, name="act"), "act", "leaky"),
    # the graph is never run: the NHWC input is only read as NCHW to build the node
    (lambda tf, x: tf.nn.max_pool2d(x, 2, 2, "VALID", data_format="NCHW", name="pool"), "pool", "NCHW"),
    (lambda tf, x: tf.nn.sigmoid(x, name="act"), "act", "sigmoid"),
    (lambda tf, x: tf.nn.tanh(x, name="act"), "act", "tanh"),
])
def test_graphdef_refusals_name_the_node(tmp_path, build, node, word):
    gd = _tiny_graph(build)
    with pytest.raises(UnsupportedModelError) as err:
        compile_model(write_pb(tmp_path, gd))
    assert f"'{node}'" in str(err.value) and word.lower() in str(err.value).lower()


def test_graphdef_maxpool_same_and_relu(tmp_path):
    gd = _tiny_graph(lambda tf, x: tf.nn.max_pool2d(tf.nn.relu(x), 3, 2, "SAME"))
    plan = compile_model(write_pb(tmp_path, gd))
    x = np.random.default_rng(2).normal(size=(4, 6, 6, 2))
    assert [g.kind for g in plan.gc_layers] == ["maxpool"] and plan.gc_layers[0].relu
    assert_close_rel(plan.forward(x), run_graph(as_float64(gd), x), 1e-9)


# ----------------------------------------------------------------------------- Keras
@pytest.mark.parametrize("layout", ["cryptonets-relu", "mlp"])
@pytest.mark.parametrize("shape", [DEMO_SHAPE, (8, 8, 1)])
def test_keras_demo_layouts_match_predict(layout, shape):
    import keras

    from capc.learning.architectures import build_cryptonets_layout

    keras.utils.set_random_seed(4)
    model = build_cryptonets_layout(layout, input_shape=shape)
    plan = compile_model(model)
    assert isinstance(plan, HybridPlan)
    assert [g.kind for g in plan.gc_layers] == (["relu", "relu"] if layout == "cryptonets-relu"
                                                 else ["maxpool", "relu", "relu"])
    x = _inputs(5, shape)
    assert_close_rel(plan.forward(x), model.predict(x, verbose=0), 1e-5)


def test_keras_relu_spellings_and_same_maxpool():
    import keras

    L = keras.layers
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((9, 7, 2)),
        L.Conv2D(3, 3, padding="same", activation="relu", name="c1"),
        L.MaxPooling2D((3, 2), strides=(2, 2), padding="same", name="p1"),
        L.Activation("relu", name="a1"),
        L.Conv2D(4, 2, name="c2"),
        L.ReLU(name="r1"),
        L.MaxPooling2D(2, name="p2"),
        L.Flatten(),
        L.Dense(6, activation="relu", name="d1"),
        L.Dense(3, activation="softmax", name="d2"),
    ])
    plan = compile_model(model)
    # c1's relu and p1 merge; a1 follows a max-pool so it merges too; r1 + p2 merge; d1's relu alone
    assert [(g.kind, g.relu) for g in plan.gc_layers] == [("maxpool", True), ("maxpool", True),
                                                          ("relu", True)]
    x = _inputs(6, (9, 7, 2))
    logits = plan.forward(x)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, model.predict(x, verbose=0), atol=1e-6)


def test_keras_export_to_frozen_graph(tmp_path):
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from capc.learning.architectures import build_cryptonets_layout

    keras.utils.set_random_seed(6)
    model = build_cryptonets_layout("mlp", input_shape=(8, 8, 1))
    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(
        tf.TensorSpec([None, 8, 8, 1], tf.float32))
    gd = convert_variables_to_constants_v2(fn).graph.as_graph_def()
    plan = compile_model(write_pb(tmp_path, gd))
    assert [g.kind for g in plan.gc_layers] == ["maxpool", "relu", "relu"]
    x = _inputs(4, (8, 8, 1))
    assert_close_rel(plan.forward(x), model.predict(x, verbose=0), 1e-5)


@pytest.mark.parametrize("make, word", [
    (lambda L: L.ReLU(max_value=6.0, name="bad"), "relu6"),
    (lambda L: L.ReLU(negative_slope=0.2, name="bad"), "leaky"),
    (lambda L: L.ReLU(threshold=0.5, name="bad"), "plain relu"),
    (lambda L: L.LeakyReLU(name="bad"), "leaky"),
    (lambda L: L.Activation("relu6", name="bad"), "relu6"),
    (lambda L: L.Activation("sigmoid", name="bad"), "sigmoid"),
    (lambda L: L.Activation("tanh", name="bad"), "tanh"),
    (lambda L: L.MaxPooling2D(data_format="channels_first", name="bad"), "channels_last"),
    (lambda L: L.GlobalMaxPooling2D(name="bad"), "max pooling"),
])
def test_keras_refusals_name_the_layer(make, word):
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(2, 3), make(L), L.Flatten(), L.Dense(3)])
    with pytest.raises(UnsupportedModelError) as err:
        compile_model(model)
    assert "'bad'" in str(err.value) and word in str(err.value).lower()


def test_keras_dense_leaky_activation_refused():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="leaky_relu", name="d")])
    with pytest.raises(UnsupportedModelError, match="'d'.*leaky"):
        compile_model(model)


# ----------------------------------------------------------------------------- build_plan / GcLayer
def _lin(rng, n_out: int, n_in: int, name: str = "lin") -> RawLinear:
    return RawLinear(sp.csr_matrix(rng.normal(size=(n_out, n_in))), rng.normal(size=n_out), name)


def _affine(op: RawLinear, v: np.ndarray) -> np.ndarray:
    return v @ op.weight.T.toarray() + op.bias


def test_build_plan_without_gc_layers_is_a_plan():
    rng = np.random.default_rng(0)
    a, b = _lin(rng, 5, 4), _lin(rng, 2, 5)
    plan = build_plan([a, RawPoly((0.0, 0.0, 1.0), "sq"), b], (4,), ["x"])
    assert isinstance(plan, Plan) and plan.depth == 3
    x = rng.normal(size=(3, 4))
    np.testing.assert_allclose(plan.forward(x), _affine(b, _affine(a, x) ** 2))


def test_build_plan_merges_relu_and_maxpool():
    rng = np.random.default_rng(1)
    a, b = _lin(rng, 8, 4), _lin(rng, 2, 3)
    windows = np.array([[0, 1, 2], [3, 4, 4], [5, 6, 7]])
    for ops in ([RawRelu("r"), RawMaxPool(windows, "p")], [RawMaxPool(windows, "p"), RawRelu("r")]):
        plan = build_plan([a, *ops, b], (4,), [])
        assert isinstance(plan, HybridPlan) and len(plan.segments) == 2
        (g,) = plan.gc_layers
        assert (g.kind, g.relu, g.size_in, g.size_out, g.window) == ("maxpool", True, 8, 3, 3)
        x = rng.normal(size=(5, 4))
        h = np.maximum(_affine(a, x)[:, windows].max(-1), 0)
        np.testing.assert_allclose(plan.forward(x), _affine(b, h))
        np.testing.assert_allclose(plan.forward(x[0]), _affine(b, h)[0])  # one input: [C]
    plan = build_plan([a, RawMaxPool(windows, "p"), b], (4,), [])
    assert not plan.gc_layers[0].relu


def test_build_plan_composes_consecutive_maxpools():
    rng = np.random.default_rng(2)
    a, b = _lin(rng, 6, 3), _lin(rng, 2, 2)
    w1 = np.array([[0, 1], [2, 3], [4, 5], [1, 4]])  # 6 -> 4
    w2 = np.array([[0, 1, 2], [3, 3, 0]])              # 4 -> 2
    plan = build_plan([a, RawMaxPool(w1, "p1"), RawRelu("r"), RawMaxPool(w2, "p2"), b], (3,), [])
    (g,) = plan.gc_layers
    assert (g.size_in, g.size_out, g.window, g.relu) == (6, 2, 6, True)
    np.testing.assert_array_equal(g.windows, w1[w2].reshape(2, 6))
    x = rng.normal(size=(4, 3))
    h = np.maximum(_affine(a, x)[:, w1].max(-1)[:, w2].max(-1), 0)
    np.testing.assert_allclose(plan.forward(x), _affine(b, h))


def test_build_plan_model_starting_or_ending_with_relu():
    rng = np.random.default_rng(3)
    a = _lin(rng, 3, 4)
    x = rng.normal(size=(2, 2, 2, 1))
    first = build_plan([RawRelu("r"), a], (2, 2, 1), [])
    assert isinstance(first, HybridPlan) and len(first.segments) == 2
    assert first.segments[0].public_plan.stage_shapes == (("linear", 4, 4),)  # identity segment
    assert first.segments[0].input_shape == (2, 2, 1) and first.input_shape == (2, 2, 1)
    np.testing.assert_allclose(first.forward(x), _affine(a, np.maximum(x.reshape(2, 4), 0)))
    last = build_plan([a, RawRelu("r")], (2, 2, 1), [])
    assert last.segments[-1].public_plan.stage_shapes == (("linear", 3, 3),) and last.num_classes == 3
    np.testing.assert_allclose(last.forward(x), np.maximum(_affine(a, x.reshape(2, 4)), 0))


def test_build_plan_refuses_windows_that_do_not_fit():
    rng = np.random.default_rng(4)
    with pytest.raises(UnsupportedModelError, match="'p'"):
        build_plan([_lin(rng, 4, 2), RawMaxPool(np.array([[0, 4]]), "p"), _lin(rng, 1, 1)], (2,), [])


def test_gc_layer_relu_apply_gather_interval():
    g = GcLayer(4)
    v = np.array([[-1.0, 0.5, 2.0, -0.1]])
    assert (g.kind, g.window, g.size_out) == ("relu", 1, 4)
    np.testing.assert_array_equal(g.apply(v), [[0.0, 0.5, 2.0, 0.0]])
    assert g.gather(v) is v
    lo, hi = g.interval(np.array([-2.0, -1.0, 0.5, -3.0]), np.array([-1.0, 1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(lo, [0, 0, 0.5, 0])
    np.testing.assert_array_equal(hi, [0, 1, 2, 3])


def test_gc_layer_maxpool_apply_gather_interval():
    rng = np.random.default_rng(5)
    windows = np.array([[0, 2, 4], [1, 1, 3], [5, 4, 0]])
    g = GcLayer(6, windows, relu=False)
    v = rng.normal(size=(3, 6))
    np.testing.assert_array_equal(g.apply(v), np.stack([v[:, w].max(-1) for w in windows], 1))
    # gather lays out window after window; it only moves values, so it commutes with sharing
    gathered = g.gather(v)
    assert gathered.shape == (3, 9)
    np.testing.assert_array_equal(gathered.reshape(3, 3, 3).max(-1), g.apply(v))
    share = rng.normal(size=v.shape)
    np.testing.assert_allclose(g.gather(v - share) + g.gather(share), gathered)
    # interval: exact bounds of the max (and of relu(max)) over a box
    lo, hi = -rng.uniform(0, 1, 6), rng.uniform(0, 1, 6)
    for layer in (g, GcLayer(6, windows, relu=True)):
        out_lo, out_hi = layer.interval(lo, hi)
        pts = lo + (hi - lo) * rng.uniform(size=(500, 6))
        vals = layer.apply(pts)
        assert np.all(vals >= out_lo - 1e-12) and np.all(vals <= out_hi + 1e-12)
        np.testing.assert_array_equal(layer.apply(lo), out_lo)
        np.testing.assert_array_equal(layer.apply(hi), out_hi)
    back = GcLayer.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back.digest() == g.digest() and not back.relu
    np.testing.assert_array_equal(back.windows, windows)


def test_gc_layer_rejects_bad_windows():
    with pytest.raises(HEError, match="0..3"):
        GcLayer(4, np.array([[0, 4]]))
    with pytest.raises(HEError, match="shape"):
        GcLayer(4, np.array([0, 1]))
    with pytest.raises(HEError, match="ReLU"):
        GcLayer(4, None, relu=False)
