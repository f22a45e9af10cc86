"""Model compiler: a tf.keras model or a frozen TensorFlow GraphDef (``.pb``) to a plan.

This plays the role of he-transformer's graph compiler.  Every supported layer is an affine map on
the NHWC-flattened activation vector (built as a sparse matrix, so Flatten/Reshape are free and the
flatten order is TensorFlow's), an element-wise polynomial, or one of the two non-polynomial layers
that the hybrid protocol computes with garbled circuits (:mod:`capc.he.hybrid`):

======================  ===========================================================================
Keras layer             GraphDef op
======================  ===========================================================================
Conv2D                  Conv2D (strides, SAME / VALID / EXPLICIT padding, NHWC, no dilation)
Dense                   MatMul (transpose_a/b), BiasAdd, Add/AddV2/Sub with a constant
Flatten, Reshape        Reshape
AveragePooling2D,       AvgPool (SAME divides by the number of real inputs, as TensorFlow does)
GlobalAveragePooling2D  Mean over H, W
BatchNormalization      FusedBatchNorm* (inference), folded into the neighbouring affine map
ZeroPadding2D           Pad / PadV2 with zeros
Square, Polynomial      Mul(x, x), Square, Pow(x, 2), Mul(x, constant)
ReLU, Activation relu,  Relu (plain ``max(x, 0)`` only: no cap, slope or threshold)
activation='relu'
MaxPooling2D            MaxPool (SAME / VALID padding, NHWC; a window is the real inputs it covers)
Dropout, InputLayer     Identity, NoOp
======================  ===========================================================================

A softmax on the very last layer is dropped (it does not change the argmax; the plan outputs logits).
Without ReLU or max pooling the result is a :class:`~capc.he.plan.Plan`; with them,
:func:`~capc.he.hybrid.build_plan` splits the model into a :class:`~capc.he.hybrid.HybridPlan`.
Anything else — ReLU6, leaky ReLU, sigmoid, tanh, Lambda, branches — raises
:class:`~capc.he.errors.UnsupportedModelError` naming the layer and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from capc.he.errors import HEError, UnsupportedModelError
from capc.he.hybrid import HybridPlan, RawMaxPool, RawOp, RawRelu, build_plan
from capc.he.plan import ConvGeometry, Plan, RawLinear, RawPoly

Shape = tuple[int, ...]

# Searched in order by substring of the lower-cased layer class / op / activation name, so the
# ReLU variants must come before "relu".
_NONLINEAR_REASON = {
    "relu6": "ReLU6 (a ReLU capped at 6) is unsupported: the garbled-circuit layers compute only "
             "max(x, 0); train with a plain ReLU",
    "leaky": "leaky ReLU is unsupported: the garbled-circuit layers compute only max(x, 0); train "
             "with a plain ReLU",
    "prelu": "PReLU (learned negative slope) is unsupported: the garbled-circuit layers compute only "
             "max(x, 0); train with a plain ReLU",
    "relu": "only the plain ReLU max(x, 0) is supported (no max_value, negative_slope or threshold)",
    "maxpool": "only 2-D max pooling over HxW windows with SAME or VALID padding (MaxPooling2D / "
               "MaxPool, NHWC) is supported",
    "sigmoid": "sigmoid is not a polynomial; train with Square/Polynomial activations",
    "tanh": "tanh is not a polynomial; train with Square/Polynomial activations",
    "lambda": "a Lambda layer's Python code cannot be read reliably; use capc.he.layers.Square or Polynomial",
}


def _reason(kind: str) -> str:
    k = kind.lower()
    for key, why in _NONLINEAR_REASON.items():
        if key in k:
            return why
    return ("it is not an affine map or a polynomial activation (evaluated under CKKS), nor a plain "
            "ReLU or 2-D max pooling (evaluated by garbled circuits)")


# ----------------------------------------------------------------------------- affine builders
def _same_pads(size: int, k: int, stride: int) -> tuple[int, int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def _conv_geometry(h: int, w: int, kh: int, kw: int, strides: tuple[int, int], padding: Any
                   ) -> tuple[int, int, int, int]:
    """Output size and top/left padding for TF padding 'SAME', 'VALID' or explicit ((t,b),(l,r))."""
    sh, sw = strides
    if isinstance(padding, str) and padding.upper() == "SAME":
        ho, pt, _ = _same_pads(h, kh, sh)
        wo, pl, _ = _same_pads(w, kw, sw)
        return ho, wo, pt, pl
    if isinstance(padding, str) and padding.upper() == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = padding
    (pt, pb), (pl, pr) = pads
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise HEError(f"window {kh}x{kw} does not fit input {h}x{w}")
    return ho, wo, pt, pl


def conv_geometry(in_shape: Shape, kernel_shape: tuple[int, ...], strides: tuple[int, int], padding: Any
                  ) -> ConvGeometry:
    """The public geometry of a convolution (kernel shape [kh, kw, cin, cout])."""
    h, w, cin = in_shape
    kh, kw, _, cout = kernel_shape
    ho, wo, pt, pl = _conv_geometry(h, w, kh, kw, strides, padding)
    return ConvGeometry(int(h), int(w), int(cin), int(ho), int(wo), int(cout), int(kh), int(kw),
                        int(strides[0]), int(strides[1]), int(pt), int(pl))


def conv2d_matrix(in_shape: Shape, kernel: np.ndarray, strides: tuple[int, int], padding: Any
                  ) -> tuple[sp.csr_matrix, Shape]:
    """Sparse matrix of a 2-D convolution (TF semantics, NHWC, kernel [kh, kw, cin, cout])."""
    h, w, cin = in_shape
    kh, kw, kcin, cout = kernel.shape
    if kcin != cin:
        raise HEError(f"kernel expects {kcin} input channels, activation has {cin}")
    ho, wo, pt, pl = _conv_geometry(h, w, kh, kw, strides, padding)
    oy, ox, ky, kx, ci, co = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw),
                                         np.arange(cin), np.arange(cout), indexing="ij")
    iy = oy * strides[0] + ky - pt
    ix = ox * strides[1] + kx - pl
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    rows = ((oy * wo + ox) * cout + co)[ok]
    cols = ((iy * w + ix) * cin + ci)[ok]
    vals = kernel[ky[ok], kx[ok], ci[ok], co[ok]].astype(np.float64)
    mat = sp.coo_matrix((vals, (rows, cols)), shape=(ho * wo * cout, h * w * cin)).tocsr()
    mat.sum_duplicates()
    return mat, (ho, wo, cout)


def avgpool_matrix(in_shape: Shape, pool: tuple[int, int], strides: tuple[int, int], padding: str
                   ) -> tuple[sp.csr_matrix, Shape]:
    """Average pooling as a sparse matrix; with SAME padding only real inputs are counted (TF)."""
    h, w, c = in_shape
    ho, wo, pt, pl = _conv_geometry(h, w, pool[0], pool[1], strides, padding)
    rows, cols, vals = [], [], []
    for oy in range(ho):
        for ox in range(wo):
            cells = [(iy, ix) for iy in range(oy * strides[0] - pt, oy * strides[0] - pt + pool[0])
                     for ix in range(ox * strides[1] - pl, ox * strides[1] - pl + pool[1])
                     if 0 <= iy < h and 0 <= ix < w]
            for ch in range(c):
                for iy, ix in cells:
                    rows.append((oy * wo + ox) * c + ch)
                    cols.append((iy * w + ix) * c + ch)
                    vals.append(1.0 / len(cells))
    return sp.csr_matrix((vals, (rows, cols)), shape=(ho * wo * c, h * w * c)), (ho, wo, c)


def maxpool_windows(in_shape: Shape, pool: tuple[int, int], strides: tuple[int, int], padding: str
                    ) -> tuple[np.ndarray, Shape]:
    """The pooling windows of a 2-D max pooling (TF semantics, NHWC) as flat input indices.

    Args:
        in_shape: the layer input (H, W, C).
        pool, strides: window and step (rows, columns).
        padding: ``"SAME"`` or ``"VALID"`` (any case); SAME pads like TensorFlow (the odd extra row /
            column at the bottom / right).

    Returns:
        ``(windows, out_shape)``: int64 ``[Ho * Wo * C, pool_h * pool_w]``, row ``(oy * Wo + ox) * C + c``
        listing the NHWC-flat indices ``(iy * W + ix) * C + c`` the output takes the max of, and
        ``(Ho, Wo, C)``.  A SAME window that hangs over the border holds only its real inputs, the
        missing entries repeating one of them (TF pads max pooling with -inf; a repeat leaves the max
        unchanged and keeps the array rectangular).
    """
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise HEError(f"max pooling padding must be 'SAME' or 'VALID', got {padding!r}")
    h, w, c = in_shape
    ph, pw = pool
    ho, wo, pt, pl = _conv_geometry(h, w, ph, pw, strides, padding)
    oy, ox, ky, kx = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(ph), np.arange(pw), indexing="ij")
    iy = (oy * strides[0] + ky - pt).reshape(ho * wo, ph * pw)
    ix = (ox * strides[1] + kx - pl).reshape(ho * wo, ph * pw)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    if not ok.any(axis=1).all():  # cannot happen for SAME / VALID, but never emit an empty max
        raise HEError(f"a {ph}x{pw} pooling window with strides {strides} covers no input of {h}x{w}")
    pos = iy * w + ix
    first = pos[np.arange(ho * wo), np.argmax(ok, axis=1)]
    pos = np.where(ok, pos, first[:, None])
    windows = (pos[:, None, :] * c + np.arange(c)[None, :, None]).reshape(ho * wo * c, ph * pw)
    return windows.astype(np.int64), (ho, wo, c)


def pad_matrix(in_shape: Shape, pads: tuple[tuple[int, int], tuple[int, int]]) -> tuple[sp.csr_matrix, Shape]:
    """Zero padding of an NHWC image as a 0/1 selection matrix."""
    h, w, c = in_shape
    (pt, pb), (pl, pr) = pads
    ho, wo = h + pt + pb, w + pl + pr
    iy, ix, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    rows = (((iy + pt) * wo + ix + pl) * c + ch).ravel()
    cols = ((iy * w + ix) * c + ch).ravel()
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(ho * wo * c, h * w * c)), (ho, wo, c)


def dense_matrix(in_shape: Shape, kernel: np.ndarray) -> tuple[sp.csr_matrix, Shape]:
    """Dense layer applied to the last axis (Keras semantics): kernel [in, out]."""
    if in_shape[-1] != kernel.shape[0]:
        raise HEError(f"dense kernel expects {kernel.shape[0]} inputs, activation has {in_shape[-1]}")
    prefix = int(np.prod(in_shape[:-1]))
    mat = sp.kron(sp.identity(prefix), sp.csr_matrix(kernel.T.astype(np.float64))).tocsr()
    return mat, (*in_shape[:-1], kernel.shape[1])


def channel_affine(in_shape: Shape, scale: np.ndarray, shift: np.ndarray) -> RawLinear:
    """Per-channel (last axis) affine map ``y = scale * x + shift``, e.g. folded batch norm."""
    reps = int(np.prod(in_shape[:-1]))
    return RawLinear(sp.diags(np.tile(scale, reps)).tocsr(), np.tile(shift, reps), "")


# ----------------------------------------------------------------------------- keras
class _Chain:
    """Accumulates raw operations and the current activation shape."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.input_shape = shape
        self.ops: list[RawOp] = []
        self.layers: list[str] = []

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def linear(self, mat: sp.csr_matrix, bias: np.ndarray | None, shape: Shape, name: str,
               conv: ConvGeometry | None = None) -> None:
        b = np.zeros(mat.shape[0]) if bias is None else np.asarray(bias, np.float64).reshape(-1)
        self.ops.append(RawLinear(mat, b, name, conv))
        self.shape = tuple(int(d) for d in shape)

    def broadcast(self, value: Any, name: str) -> np.ndarray:
        """A constant operand broadcast to the activation (a leading batch axis of 1 is dropped)."""
        arr = np.asarray(value, np.float64)
        while arr.ndim > len(self.shape) and arr.shape[0] == 1:
            arr = arr[0]
        try:
            return np.broadcast_to(arr, self.shape).reshape(-1)
        except ValueError:
            raise UnsupportedModelError(f"node '{name}': constant of shape {np.shape(value)} does not "
                                        f"broadcast to the activation shape {self.shape}") from None

    def bias(self, bias: np.ndarray, name: str) -> None:
        b = self.broadcast(bias, name)
        self.linear(sp.identity(self.size, format="csr"), b, self.shape, name)

    def scale(self, factor: np.ndarray, name: str) -> None:
        f = self.broadcast(factor, name)
        self.linear(sp.diags(f).tocsr(), None, self.shape, name)

    def poly(self, coeffs: tuple[float, ...], name: str) -> None:
        self.ops.append(RawPoly(coeffs, name))

    def relu(self, name: str) -> None:
        self.ops.append(RawRelu(name))

    def maxpool(self, pool: tuple[int, int], strides: tuple[int, int], padding: Any, name: str) -> None:
        if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
            raise UnsupportedModelError(f"layer '{name}': max pooling padding {padding!r} is "
                                        f"unsupported: {_reason('maxpool')}")
        windows, shape = maxpool_windows(_image(self, name), pool, strides, padding)
        self.ops.append(RawMaxPool(windows, name))
        self.shape = shape

    def reshape(self, shape: Shape, name: str) -> None:
        shape = tuple(int(d) for d in shape)
        if -1 in shape:
            known = int(np.prod([d for d in shape if d != -1]))
            shape = tuple(self.size // known if d == -1 else d for d in shape)
        if int(np.prod(shape)) != self.size:
            raise UnsupportedModelError(f"layer '{name}': cannot reshape {self.shape} to {shape}")
        self.shape = shape


def _image(chain: _Chain, name: str) -> Shape:
    if len(chain.shape) != 3:
        raise UnsupportedModelError(f"layer '{name}': expects an HxWxC activation, got shape {chain.shape}")
    return chain.shape


def _activation_name(fn: Any) -> str:
    return getattr(fn, "__name__", str(fn)).lower()


def _keras_layer(chain: _Chain, layer: Any, is_last: bool) -> None:
    import keras

    from capc.he.layers import Polynomial, Square

    name = layer.name
    cls = type(layer).__name__
    cfg = layer.get_config()
    L = keras.layers

    def check_activation() -> None:
        act = _activation_name(getattr(layer, "activation", None))
        if act in ("linear", "none"):
            return
        if act == "relu":  # keras.activations.relu with its default arguments
            chain.relu(name)
            return
        if act == "softmax" and is_last:
            chain.layers.append(f"{name}: softmax dropped (argmax unchanged; the plan outputs logits)")
            return
        raise UnsupportedModelError(f"layer '{name}' ({cls}): activation '{act}' is unsupported: "
                                    f"{_reason(act)}")

    if cfg.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedModelError(f"layer '{name}' ({cls}): data_format must be channels_last (NHWC)")
    if isinstance(layer, L.InputLayer) or isinstance(layer, (L.Dropout, L.GaussianNoise,
                                                             L.GaussianDropout, L.ActivityRegularization)):
        return
    if isinstance(layer, Square):
        chain.poly((0.0, 0.0, 1.0), name)
    elif isinstance(layer, Polynomial):
        chain.poly(tuple(layer.coeffs), name)
    elif isinstance(layer, L.Conv2D) and cls == "Conv2D":
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
            raise UnsupportedModelError(f"layer '{name}' (Conv2D): dilation and groups are unsupported")
        kernel = np.asarray(layer.kernel.numpy())
        image = _image(chain, name)
        mat, shape = conv2d_matrix(image, kernel, tuple(cfg["strides"]), cfg["padding"])
        bias = np.tile(layer.bias.numpy(), shape[0] * shape[1]) if layer.use_bias else None
        chain.linear(mat, bias, shape, name, conv_geometry(image, kernel.shape, tuple(cfg["strides"]), cfg["padding"]))
        check_activation()
    elif isinstance(layer, L.Dense) and cls == "Dense":
        mat, shape = dense_matrix(chain.shape, np.asarray(layer.kernel.numpy()))
        bias = np.tile(layer.bias.numpy(), int(np.prod(shape[:-1]))) if layer.use_bias else None
        chain.linear(mat, bias, shape, name)
        check_activation()
    elif isinstance(layer, L.Flatten):
        chain.reshape((chain.size,), name)
    elif isinstance(layer, L.Reshape):
        chain.reshape(tuple(cfg["target_shape"]), name)
    elif isinstance(layer, L.ReLU):
        extra = {k: cfg.get(k) for k in ("max_value", "negative_slope", "threshold")
                 if cfg.get(k) not in (None, 0, 0.0)}
        if extra:
            what = "relu6" if cfg.get("max_value") == 6 and len(extra) == 1 else \
                "leaky" if "negative_slope" in extra else "relu"
            raise UnsupportedModelError(f"layer '{name}' (ReLU {extra}): {_reason(what)}")
        chain.relu(name)
    elif isinstance(layer, L.MaxPooling2D):
        pool = tuple(cfg["pool_size"])
        chain.maxpool(pool, tuple(cfg["strides"] or pool), cfg["padding"], name)
    elif isinstance(layer, L.AveragePooling2D):
        pool = tuple(cfg["pool_size"])
        strides = tuple(cfg["strides"] or pool)
        mat, shape = avgpool_matrix(_image(chain, name), pool, strides, cfg["padding"])
        chain.linear(mat, None, shape, name)
    elif isinstance(layer, L.GlobalAveragePooling2D):
        h, w, c = _image(chain, name)
        mat, _ = avgpool_matrix((h, w, c), (h, w), (h, w), "valid")
        chain.linear(mat, None, (1, 1, c) if cfg.get("keepdims") else (c,), name)
    elif isinstance(layer, L.ZeroPadding2D):
        mat, shape = pad_matrix(_image(chain, name), tuple(tuple(p) for p in cfg["padding"]))
        chain.linear(mat, None, shape, name)
    elif isinstance(layer, L.BatchNormalization):
        axis = cfg["axis"]
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, len(chain.shape)):
            raise UnsupportedModelError(f"layer '{name}' (BatchNormalization): only the channel "
                                        f"(last) axis is supported, got axis={axis}")
        c = chain.shape[-1]
        gamma = layer.gamma.numpy() if layer.scale else np.ones(c)
        beta = layer.beta.numpy() if layer.center else np.zeros(c)
        inv = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
        aff = channel_affine(chain.shape, inv, beta - layer.moving_mean.numpy() * inv)
        chain.linear(aff.weight, aff.bias, chain.shape, name)
    elif isinstance(layer, L.Activation):
        act = _activation_name(layer.activation)
        if act in ("linear", "relu") or (act == "softmax" and is_last):
            check_activation()
        else:
            raise UnsupportedModelError(f"layer '{name}' (Activation '{act}'): {_reason(act)}")
    else:
        raise UnsupportedModelError(f"layer '{name}' ({cls}) is unsupported: {_reason(cls)}")
    chain.layers.append(f"{name}: {cls} -> {chain.shape}")


def _compile_keras(model: Any, input_shape: Shape | None, source: str) -> Plan | HybridPlan:
    import keras

    if not isinstance(model, keras.Model):
        raise HEError(f"expected a keras.Model, got {type(model).__name__}")
    if input_shape is None:
        try:
            shape = model.input_shape
        except (AttributeError, ValueError):
            raise HEError("the Keras model has no known input shape; pass input_shape=") from None
        if isinstance(shape, list):
            raise UnsupportedModelError("models with several inputs are unsupported")
        input_shape = tuple(shape[1:])
    if any(d is None for d in input_shape):
        raise HEError(f"input shape {input_shape} has unknown dimensions; pass input_shape=")
    layers = [ly for ly in model.layers if not isinstance(ly, keras.layers.InputLayer)]
    _check_chain(model, layers)
    chain = _Chain(tuple(int(d) for d in input_shape))
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.Model):
            raise UnsupportedModelError(f"layer '{layer.name}': nested models are unsupported; flatten "
                                        "them into one Sequential model")
        _keras_layer(chain, layer, i == len(layers) - 1)
    return _finish(chain, source)


def _check_chain(model: Any, layers: list[Any]) -> None:
    """Refuse functional models that are not a simple chain (branches, skips, several inputs)."""
    import keras

    if isinstance(model, keras.Sequential):
        return
    prev = None
    for layer in layers:
        try:
            inputs = layer.input
        except (AttributeError, ValueError):
            raise UnsupportedModelError(f"layer '{layer.name}' is used more than once or has "
                                        "several inputs; only a chain of layers is supported") from None
        if isinstance(inputs, (list, tuple)):
            raise UnsupportedModelError(f"layer '{layer.name}' ({type(layer).__name__}) has several "
                                        "inputs; only a chain of layers is supported")
        hist = getattr(inputs, "_keras_history", None)
        src = hist[0] if hist else None
        if prev is not None and src is not prev:
            raise UnsupportedModelError(f"layer '{layer.name}' does not consume the previous layer's "
                                        "output; only a chain of layers is supported")
        prev = layer


def _finish(chain: _Chain, source: str) -> Plan | HybridPlan:
    if len(chain.shape) != 1 and int(np.prod(chain.shape[:-1])) != 1:
        raise UnsupportedModelError(f"the model output has shape {chain.shape}; expected a vector of logits")
    return build_plan(chain.ops, chain.input_shape, chain.layers, source)


# ----------------------------------------------------------------------------- GraphDef
def _tf_attr_list(node: Any, key: str) -> list[int]:
    return [int(v) for v in node.attr[key].list.i]


def _compile_graphdef(path: str, input_shape: Shape | None) -> Plan | HybridPlan:
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, which has no stable import path
        raise HEError(f"{path}: not a frozen TensorFlow GraphDef ({exc})") from None
    nodes = {n.name: n for n in graph.node}
    order = _topo_order(graph.node, nodes)
    placeholders = [n for n in graph.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(f"{path}: expected exactly one Placeholder input, found "
                                    f"{len(placeholders)}")
    ph = placeholders[0]
    dims = [d.size for d in ph.attr["shape"].shape.dim]
    in_shape = tuple(input_shape) if input_shape is not None else tuple(dims[1:])
    if not in_shape or any(d is None or d < 0 for d in in_shape):
        raise HEError(f"placeholder '{ph.name}' has shape {dims}; pass input_shape=")
    chain = _Chain(tuple(int(d) for d in in_shape))

    def inputs(node: Any) -> list[str]:
        return [i.split(":")[0] for i in node.input if not i.startswith("^")]

    # Nodes that depend on the input's values (not merely on its shape) form the data path.
    data: set[str] = {ph.name}
    for name in order:
        node = nodes[name]
        if node.op not in _SHAPE_ONLY_OPS and any(i in data for i in inputs(node)):
            data.add(name)
    # The model output is the one data-path node that no data-path node reads: a Keras export ends
    # in an Identity, the original demo's graphs in 'output/BiasAdd'.  Shape-only readers do not count.
    readers = {i for n in data for i in inputs(nodes[n])}
    sinks = [n for n in order if n in data and n not in readers]
    if len(sinks) > 1:
        raise UnsupportedModelError(f"{path}: the graph has several outputs ({', '.join(sinks)}); only "
                                    "a chain of operations with one output is supported")
    output = sinks[0]
    needed = sorted({i for n in data for i in inputs(nodes[n]) if i not in data})
    consts = _evaluate_constants(graph, needed, ph.name, (1, *chain.shape))
    sym: dict[str, int] = {ph.name: 0}  # node name -> version of the chain it denotes
    version = 0
    for name in order:
        if name not in data or name == ph.name:
            continue
        node = nodes[name]
        op = node.op
        ins = inputs(node)
        sym_in = [i for i in ins if i in sym]
        if any(sym[i] != version for i in sym_in):
            raise UnsupportedModelError(f"node '{name}' ({op}): the graph branches (uses an earlier "
                                        "activation); only a chain of operations is supported")
        const_in = [consts[i] for i in ins if i in consts]
        x_first = ins[0] in sym

        if op == "Squeeze":
            axes = {a - 1 if a > 0 else len(chain.shape) + a for a in _tf_attr_list(node, "squeeze_dims")}
            if -1 in axes:
                raise UnsupportedModelError(f"node '{name}' (Squeeze): cannot squeeze the batch axis")
            chain.reshape(tuple(d for i, d in enumerate(chain.shape)
                                if not (d == 1 and (not axes or i in axes))), name)
        elif op == "ExpandDims":
            axis = int(const_in[0])
            pos = axis - 1 if axis > 0 else len(chain.shape) + 1 + axis
            if pos < 0:
                raise UnsupportedModelError(f"node '{name}' (ExpandDims): cannot add a batch axis")
            chain.reshape((*chain.shape[:pos], 1, *chain.shape[pos:]), name)
        elif op in ("Identity", "StopGradient", "Softmax" if name == output else ""):
            if op == "Softmax":
                chain.layers.append(f"{name}: softmax dropped (argmax unchanged; the plan outputs logits)")
        elif op in ("Mul", "Square", "Pow") and (op == "Square" or len(sym_in) == 2 or
                                                (op == "Pow" and const_in and np.all(const_in[0] == 2))):
            chain.poly((0.0, 0.0, 1.0), name)
        elif op == "Mul" and len(const_in) == 1:
            chain.scale(const_in[0], name)
        elif op in ("BiasAdd", "Add", "AddV2") and len(const_in) == 1:
            chain.bias(const_in[0], name)
        elif op == "Sub" and len(const_in) == 1:
            if x_first:
                chain.bias(-const_in[0], name)
            else:
                chain.scale(-1.0, name)
                chain.bias(const_in[0], name)
        elif op == "Conv2D":
            if node.attr["data_format"].s not in (b"", b"NHWC"):
                raise UnsupportedModelError(f"node '{name}' (Conv2D): only NHWC is supported")
            if any(d != 1 for d in _tf_attr_list(node, "dilations")):
                raise UnsupportedModelError(f"node '{name}' (Conv2D): dilation is unsupported")
            strides = _tf_attr_list(node, "strides")
            pad = node.attr["padding"].s.decode()
            if pad == "EXPLICIT":
                ep = _tf_attr_list(node, "explicit_paddings")
                padding: Any = ((ep[2], ep[3]), (ep[4], ep[5]))
            else:
                padding = pad
            image = _image(chain, name)
            mat, shape = conv2d_matrix(image, const_in[0], (strides[1], strides[2]), padding)
            chain.linear(mat, None, shape, name,
                         conv_geometry(image, np.shape(const_in[0]), (strides[1], strides[2]), padding))
        elif op == "MatMul":
            if node.attr["transpose_a"].b:
                raise UnsupportedModelError(f"node '{name}' (MatMul): transpose_a is unsupported")
            w = const_in[0].T if node.attr["transpose_b"].b else const_in[0]
            if not x_first:
                raise UnsupportedModelError(f"node '{name}' (MatMul): the activation must be the left operand")
            if len(chain.shape) != 1:
                raise UnsupportedModelError(f"node '{name}' (MatMul): input has shape {chain.shape}; "
                                            "flatten (Reshape) first")
            mat, shape = dense_matrix(chain.shape, w)
            chain.linear(mat, None, shape, name)
        elif op == "Reshape":
            target = [int(d) for d in const_in[0]]
            chain.reshape(tuple(target[1:]) if len(target) > 1 else (chain.size,), name)
        elif op == "Relu":
            chain.relu(name)
        elif op == "MaxPool":
            fmt = node.attr["data_format"].s.decode() or "NHWC"
            if fmt != "NHWC":
                raise UnsupportedModelError(f"node '{name}' (MaxPool): data_format {fmt} is unsupported; "
                                            "only NHWC")
            ks, st = _tf_attr_list(node, "ksize"), _tf_attr_list(node, "strides")
            if len(ks) != 4 or len(st) != 4 or ks[0] != 1 or ks[3] != 1 or st[0] != 1 or st[3] != 1:
                raise UnsupportedModelError(f"node '{name}' (MaxPool): ksize {ks} / strides {st}: only "
                                            "pooling over H and W is supported")
            chain.maxpool((ks[1], ks[2]), (st[1], st[2]), node.attr["padding"].s.decode(), name)
        elif op == "AvgPool":
            ks, st = _tf_attr_list(node, "ksize"), _tf_attr_list(node, "strides")
            mat, shape = avgpool_matrix(_image(chain, name), (ks[1], ks[2]), (st[1], st[2]),
                                        node.attr["padding"].s.decode())
            chain.linear(mat, None, shape, name)
        elif op in ("Pad", "PadV2") and (op == "Pad" or np.all(const_in[1] == 0)):
            p = const_in[0]
            if np.any(p[0] != 0) or np.any(p[3] != 0):
                raise UnsupportedModelError(f"node '{name}' ({op}): only spatial padding is supported")
            mat, shape = pad_matrix(_image(chain, name), ((int(p[1][0]), int(p[1][1])),
                                                         (int(p[2][0]), int(p[2][1]))))
            chain.linear(mat, None, shape, name)
        elif op == "Mean" and np.array_equal(np.sort(const_in[0]), [1, 2]):
            h, w, c = _image(chain, name)
            mat, _ = avgpool_matrix((h, w, c), (h, w), (h, w), "VALID")
            chain.linear(mat, None, (1, 1, c) if node.attr["keep_dims"].b else (c,), name)
        elif op.startswith("FusedBatchNorm"):
            if node.attr["is_training"].b:
                raise UnsupportedModelError(f"node '{name}' ({op}): training-mode batch norm")
            gamma, beta, mean, var = (consts[i] for i in ins[1:5])
            inv = gamma / np.sqrt(var + node.attr["epsilon"].f)
            aff = channel_affine(chain.shape, inv, beta - mean * inv)
            chain.linear(aff.weight, aff.bias, chain.shape, name)
        else:
            raise UnsupportedModelError(f"node '{name}' ({op}) is unsupported: {_reason(op)}")
        if op not in ("Identity", "StopGradient", "Softmax"):
            chain.layers.append(f"{name}: {op} -> {chain.shape}")
        version += 1 if op not in ("Identity", "StopGradient", "Softmax") else 0
        sym[name] = version
    return _finish(chain, os.path.basename(path))


_SHAPE_ONLY_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike"})


def _evaluate_constants(graph: Any, names: list[str], placeholder: str, feed_shape: Shape
                        ) -> dict[str, np.ndarray]:
    """Evaluate the constant (data-independent) inputs of the data path with TensorFlow itself.

    Shape-derived values (e.g. Keras' Flatten builds its target shape from ``tf.shape(x)``) are
    computed for a batch of one, which the Reshape handler then strips.
    """
    if not names:
        return {}
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        values = sess.run([f"{n}:0" for n in names],
                          feed_dict={f"{placeholder}:0": np.zeros(feed_shape, np.float32)})
    return {n: np.asarray(v) for n, v in zip(names, values)}


def _topo_order(node_list: Any, nodes: dict[str, Any]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}
    for root in (n.name for n in node_list):
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(name)
                continue
            if state.get(name):
                continue
            if name not in nodes:
                raise HEError(f"graph references missing node '{name}'")
            state[name] = 1
            stack.append((name, True))
            for i in nodes[name].input:
                dep = i.split(":")[0].lstrip("^")
                if not state.get(dep):
                    stack.append((dep, False))
    return order


# ----------------------------------------------------------------------------- entry point
def compile_model(model: Any, input_shape: Shape | None = None) -> Plan | HybridPlan:
    """Compile a Keras model (object or ``.keras``/``.h5`` path) or a frozen GraphDef ``.pb`` path.

    Args:
        model: ``keras.Model``, or a path to a saved Keras model or a frozen ``.pb`` graph.
        input_shape: the input shape without the batch axis, when the model does not fix it.

    Returns:
        The normalised :class:`~capc.he.plan.Plan`, or a :class:`~capc.he.hybrid.HybridPlan` (CKKS
        segments joined by garbled-circuit layers) when the model has ReLU or max pooling.

    Raises:
        UnsupportedModelError: naming the first unsupported layer/op and why.
        HEError: for a missing or unreadable file or unknown input shape.
    """
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise HEError(f"model file not found: {path}")
        if path.endswith(".pb"):
            return _compile_graphdef(path, input_shape)
        if path.endswith((".keras", ".h5")):
            from capc._tf import import_tensorflow

            import_tensorflow()
            import keras

            import capc.he.layers  # noqa: F401  (registers Square / Polynomial for loading)

            try:
                loaded = keras.models.load_model(path, compile=False)
            except Exception as exc:  # Keras raises many unrelated types for a bad file
                raise HEError(f"{path}: cannot load Keras model: {exc}") from None
            return _keras_with_source(loaded, input_shape, os.path.basename(path))
        raise HEError(f"{path}: unknown model format (expected .keras, .h5 or a frozen .pb)")
    return _keras_with_source(model, input_shape, getattr(model, "name", "keras model"))


def _keras_with_source(model: Any, input_shape: Shape | None, source: str) -> Plan | HybridPlan:
    import keras

    if not isinstance(model, keras.Model):
        raise HEError(f"cannot compile a {type(model).__name__}: expected a keras.Model or a model path")
    shape = input_shape
    if shape is None:
        try:
            shape = tuple(model.input_shape[1:])
        except (AttributeError, ValueError, TypeError):
            raise HEError("the Keras model has no known input shape; pass input_shape=") from None
    return _compile_keras(model, tuple(shape), source)


__all__ = ["compile_model", "conv2d_matrix", "avgpool_matrix", "maxpool_windows", "dense_matrix",
           "pad_matrix"]
