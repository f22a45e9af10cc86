"""Export a party model (cryptonets-style, or the ReLU layouts) to a frozen TensorFlow GraphDef (``.pb``)
and read it back.

The frozen graph is what the HE compiler (and the original he-transformer tooling) reads. Contract:

* input: a ``Placeholder`` named :data:`INPUT_NODE` (``"input"``, tensor ``input:0``), float32,
  NHWC with batch dimension ``None``;
* output: an ``Identity`` named :data:`OUTPUT_NODE` (``"output"``, tensor ``output:0``), the logits
  (batch, num_classes);
* ops: only :data:`ALLOWED_OPS` — Placeholder, Const, Identity, Conv2D, BiasAdd, Square, Mul,
  Reshape (with a constant shape), MatMul, Add/AddV2, and for the ReLU layouts Relu and MaxPool
  (which the HE side evaluates with garbled circuits, not CKKS).

Keras' own traced graph is not used, because it computes Flatten's batch size at run time (Shape,
StridedSlice, Pack). Instead the layers are re-expressed with plain TF ops in a ``tf.function`` whose
weights are ``tf.Variable``s, then frozen with ``convert_variables_to_constants_v2`` and pruned to the
nodes that ``output`` depends on. :func:`check_graph_ops` refuses any other op by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from capc.learning.errors import ExportError

INPUT_NODE = "input"
OUTPUT_NODE = "output"
ALLOWED_OPS = frozenset({"Placeholder", "Const", "Identity", "Conv2D", "BiasAdd", "Square", "Mul",
                         "Reshape", "MatMul", "Add", "AddV2", "Relu", "MaxPool"})


def _layer_steps(model: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """Translate the model's layers into (kind, layer, params) steps; refuse anything unsupported."""
    import keras

    from capc.learning.layers import Polynomial, Square

    steps: list[tuple[str, Any, dict[str, Any]]] = []
    for layer in model.layers:
        name = f"layer {layer.name!r} ({type(layer).__name__})"
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
            continue  # no-ops at inference
        if isinstance(layer, Square):
            steps.append(("square", layer, {}))
        elif isinstance(layer, keras.layers.ReLU):
            cfg = layer.get_config()
            if (cfg.get("max_value") is not None or float(cfg.get("negative_slope") or 0.0) != 0.0
                    or float(cfg.get("threshold") or 0.0) != 0.0):
                raise ExportError(f"{name}: only the plain ReLU max(x, 0) is supported (no max_value, "
                                  "negative_slope or threshold)")
            steps.append(("relu", layer, {}))
        elif isinstance(layer, keras.layers.Activation):
            act = layer.get_config().get("activation")
            if act == "relu":
                steps.append(("relu", layer, {}))
            elif act != "linear":
                raise ExportError(f"{name}: activation {act!r} is not supported (only relu)")
        elif isinstance(layer, keras.layers.MaxPooling2D):
            cfg = layer.get_config()
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise ExportError(f"{name}: only channels_last (NHWC) is supported")
            pool = tuple(cfg["pool_size"])
            strides = tuple(cfg["strides"]) if cfg.get("strides") is not None else pool
            steps.append(("maxpool", layer, {"pool": pool, "strides": strides,
                                             "padding": str(cfg["padding"]).upper()}))
        elif isinstance(layer, Polynomial):
            raise ExportError(f"{name}: general polynomial activations are not part of the frozen-graph "
                              "contract (only Square); use the .keras file")
        elif isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
            cfg = layer.get_config()
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise ExportError(f"{name}: only channels_last (NHWC) is supported")
            if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
                raise ExportError(f"{name}: dilated or grouped convolutions are not supported")
            if cfg.get("activation") not in ("linear", None):
                raise ExportError(f"{name}: fused activation {cfg.get('activation')!r} is not supported")
            steps.append(("conv", layer, {"strides": tuple(cfg["strides"]),
                                          "padding": str(cfg["padding"]).upper()}))
        elif isinstance(layer, keras.layers.Flatten):
            steps.append(("flatten", layer, {}))
        elif isinstance(layer, keras.layers.Dense) and type(layer) is keras.layers.Dense:
            if layer.get_config().get("activation") not in ("linear", None):
                raise ExportError(f"{name}: fused activation is not supported; use a separate Square or ReLU layer")
            steps.append(("dense", layer, {}))
        else:
            raise ExportError(f"{name} cannot be exported: supported layers are Conv2D, Square, ReLU, "
                              "MaxPooling2D, Flatten, Dense (and Dropout, skipped)")
    return steps


def freeze_model(model: Any) -> Any:
    """Return the frozen, pruned ``tf.compat.v1.GraphDef`` of a Keras model (see module docstring).

    Raises:
        ExportError: an unsupported layer, a Dense on a non-flat tensor, or a disallowed op.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    input_shape = tuple(model.input_shape[1:])
    if len(input_shape) != 3 or any(d is None for d in input_shape):
        raise ExportError(f"model input must be a fixed (H, W, C) image shape, got {input_shape}")
    steps = _layer_steps(model)
    variables: list[tuple[str, dict[str, Any], Any, Any]] = []
    for kind, layer, params in steps:
        kernel = bias = None
        if kind in ("conv", "dense"):
            kernel = tf.Variable(layer.kernel.numpy(), name=f"{layer.name}_kernel")
            bias = tf.Variable(layer.bias.numpy(), name=f"{layer.name}_bias") if layer.use_bias else None
        variables.append((kind, params, kernel, bias))

    def forward(x: Any) -> Any:
        for kind, params, kernel, bias in variables:
            if kind == "conv":
                s = params["strides"]
                x = tf.nn.conv2d(x, kernel, strides=[1, s[0], s[1], 1], padding=params["padding"])
                if bias is not None:
                    x = tf.nn.bias_add(x, bias)
            elif kind == "square":
                x = tf.math.square(x)
            elif kind == "relu":
                x = tf.nn.relu(x)
            elif kind == "maxpool":
                p, s = params["pool"], params["strides"]
                x = tf.nn.max_pool2d(x, ksize=[1, p[0], p[1], 1], strides=[1, s[0], s[1], 1],
                                     padding=params["padding"])
            elif kind == "flatten":
                x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
            elif kind == "dense":
                if x.shape.rank != 2:
                    raise ExportError("a Dense layer must follow Flatten (its input must be 2-D)")
                x = tf.linalg.matmul(x, kernel)
                if bias is not None:
                    x = tf.nn.bias_add(x, bias)
        return tf.identity(x, name=OUTPUT_NODE)

    spec = tf.TensorSpec([None, *input_shape], tf.float32, name=INPUT_NODE)
    concrete = tf.function(forward).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = _prune(frozen.graph.as_graph_def(), OUTPUT_NODE)
    check_graph_ops(graph_def)
    return graph_def


def _prune(graph_def: Any, output: str) -> Any:
    """Keep only the nodes ``output`` depends on (drops the NoOp and Identity that tf.function adds)."""
    import tensorflow as tf

    by_name = {n.name: n for n in graph_def.node}
    keep: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in keep or name not in by_name:
            continue
        keep.add(name)
        stack.extend(i.lstrip("^").split(":")[0] for i in by_name[name].input)
    pruned = tf.compat.v1.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.node.extend(n for n in graph_def.node if n.name in keep)
    return pruned


def check_graph_ops(graph_def: Any) -> None:
    """Check the GraphDef has the ``input``/``output`` nodes and only :data:`ALLOWED_OPS`.

    Raises:
        ExportError: naming each disallowed node and op, or the missing input/output node.
    """
    bad = [f"{n.name} ({n.op})" for n in graph_def.node if n.op not in ALLOWED_OPS]
    if bad:
        raise ExportError(f"frozen graph contains ops the HE compiler does not read: {', '.join(bad)}; "
                          f"allowed: {', '.join(sorted(ALLOWED_OPS))}")
    ops = {n.name: n.op for n in graph_def.node}
    if ops.get(INPUT_NODE) != "Placeholder":
        raise ExportError(f"frozen graph has no Placeholder named {INPUT_NODE!r}")
    if OUTPUT_NODE not in ops:
        raise ExportError(f"frozen graph has no node named {OUTPUT_NODE!r}")
    if sum(op == "Placeholder" for op in ops.values()) != 1:
        raise ExportError("frozen graph must have exactly one Placeholder")


def export_frozen_graph(model: Any, path: str | Path) -> Path:
    """Freeze ``model`` and write the binary GraphDef to ``path`` (suffix ``.pb``)."""
    path = Path(path)
    if path.suffix != ".pb":
        raise ExportError(f"frozen graphs are written as '.pb' files, got {path.name!r}")
    graph_def = freeze_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(graph_def.SerializeToString())
    return path


def load_graph_def(path: str | Path) -> Any:
    """Read a binary GraphDef from ``path`` and check it against the frozen-graph contract."""
    import tensorflow as tf

    path = Path(path)
    try:
        graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
    except OSError as exc:
        raise ExportError(f"cannot read frozen graph {str(path)!r}: {exc}") from exc
    except Exception as exc:  # protobuf DecodeError
        raise ExportError(f"{str(path)!r} is not a binary TensorFlow GraphDef: {exc}") from exc
    check_graph_ops(graph_def)
    return graph_def


class FrozenModel:
    """A frozen graph made callable with TensorFlow: ``predict_logits(x)`` runs ``input -> output``."""

    def __init__(self, graph_def: Any) -> None:
        import tensorflow as tf

        check_graph_ops(graph_def)
        self.graph_def = graph_def
        placeholder = next(n for n in graph_def.node if n.name == INPUT_NODE)
        self.input_shape = tuple(d.size for d in placeholder.attr["shape"].shape.dim)
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        self._fn = wrapped.prune(f"{INPUT_NODE}:0", f"{OUTPUT_NODE}:0")

    @classmethod
    def load(cls, path: str | Path) -> "FrozenModel":
        """Load and check a ``.pb`` file."""
        return cls(load_graph_def(path))

    @property
    def ops(self) -> list[str]:
        """Op types of the graph's nodes, in node order."""
        return [n.op for n in self.graph_def.node]

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """Run the graph on images ``x`` (N, H, W, C) and return the logits as a NumPy array."""
        import tensorflow as tf

        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape[1:]):
            raise ExportError(f"input of shape {x.shape} does not match the graph's {self.input_shape}")
        return np.asarray(self._fn(tf.constant(x)))
