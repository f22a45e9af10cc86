"""Cryptonets-style Keras models: building, seeded training, prediction, saving and loading.

The architecture follows CryptoNets (Gilad-Bachrach et al., ICML 2016) with the square activation
that CKKS evaluates exactly:

    Conv2D -> Square -> Flatten -> Dense(hidden) -> Square -> Dense(num_classes)   (logits)

* 28x28 inputs (MNIST): Conv2D(5 filters, 5x5, stride 2, 'valid') -> 12x12x5, Dense(100).
* small inputs such as digits' 8x8: Conv2D(5 filters, 3x3, stride 1, 'valid') -> 6x6x5, Dense(32).

Only 'valid' padding is used, so the frozen graph needs no Pad op. Two penalties keep the logits
small enough for CKKS headroom: an L2 weight penalty on every kernel and an L2 *activity* penalty on
the logits (neither changes the inference graph). Training is seeded: :func:`set_seed` fixes
Python's, NumPy's and TensorFlow's generators and turns on TensorFlow's deterministic ops, so the
same seed gives the same weights on the same CPU and library versions.

The same training (Adam, the same two penalties) also serves the original demo's ReLU layouts
``cryptonets-relu`` and ``mlp`` (``model_type`` of :func:`train_party_model`, built by
:func:`build_party_model` from :func:`capc.learning.architectures.build_cryptonets_layout`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from capc.learning.errors import ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out of party logs
os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the frozen-graph export needs the TF backend

import keras  # noqa: E402  (after the log-level setting, which TF reads at import)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and training hyper-parameters of a cryptonets-style party model.

    ``kernel``/``stride``/``hidden`` of ``None`` mean "choose from the input size" (see the module
    docstring).
    """

    filters: int = 5
    kernel: int | None = None
    stride: int | None = None
    hidden: int | None = None
    l2: float = 1e-4
    logit_l2: float = 1e-2
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3

    def resolved(self, input_shape: Sequence[int]) -> "ModelConfig":
        """This config with the size-dependent ``None`` fields filled in for ``input_shape`` (H, W, C)."""
        h, w = int(input_shape[0]), int(input_shape[1])
        large = min(h, w) >= 16
        return ModelConfig(
            filters=self.filters,
            kernel=self.kernel if self.kernel is not None else (5 if large else 3),
            stride=self.stride if self.stride is not None else (2 if large else 1),
            hidden=self.hidden if self.hidden is not None else (100 if large else 32),
            l2=self.l2, logit_l2=self.logit_l2, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for model cards."""
        return asdict(self)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and enable deterministic TF ops (process-wide)."""
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def build_cryptonets_model(input_shape: Sequence[int], num_classes: int = 10,
                           config: ModelConfig | None = None) -> Any:
    """Build (uncompiled) the cryptonets-style model for images of shape ``input_shape`` = (H, W, C).

    Raises:
        ModelError: the input is too small for the convolution, or a size is not positive.
    """
    from capc.learning.layers import Square

    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"input_shape must be (H, W, C) with positive sizes, got {tuple(input_shape)}")
    if num_classes < 2:
        raise ModelError(f"num_classes must be at least 2, got {num_classes}")
    cfg = (config or ModelConfig()).resolved(shape)
    assert cfg.kernel is not None and cfg.stride is not None and cfg.hidden is not None
    if min(shape[:2]) < cfg.kernel:
        raise ModelError(f"input {shape} is smaller than the {cfg.kernel}x{cfg.kernel} convolution")
    if min(cfg.filters, cfg.hidden, cfg.stride) < 1:
        raise ModelError(f"filters, hidden and stride must be positive: {cfg}")
    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    logit_reg = keras.regularizers.L2(cfg.logit_l2) if cfg.logit_l2 > 0 else None
    return keras.Sequential([
        keras.Input(shape=shape, name="input"),
        keras.layers.Conv2D(cfg.filters, cfg.kernel, strides=cfg.stride, padding="valid",
                            kernel_regularizer=reg, name="conv"),
        Square(name="square_1"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(cfg.hidden, kernel_regularizer=reg, name="dense"),
        Square(name="square_2"),
        keras.layers.Dense(num_classes, kernel_regularizer=reg, activity_regularizer=logit_reg,
                           name="logits"),
    ], name="cryptonets")


#: ModelConfig fields that only the ``cryptonets`` builder reads (the other layouts are fixed).
CRYPTONETS_ONLY_FIELDS = ("filters", "kernel", "stride", "hidden")
#: The training fields every model type uses (what a card records for the ReLU layouts).
TRAINING_FIELDS = ("l2", "logit_l2", "epochs", "batch_size", "learning_rate")


def layout_conv_stride(model_type: str, input_shape: Sequence[int]) -> int:
    """Convolution stride of the ``cryptonets-relu`` / ``mlp`` layouts for ``input_shape``: the
    original's 2, except ``mlp`` on small images (min(H, W) < 16, e.g. 8x8 digits), which gets 1 so
    that the 3x3/3 max-pool leaves a 2x2 map (with stride 2 it leaves 1x1; see ``models/README.md``)."""
    small = min(int(input_shape[0]), int(input_shape[1])) < 16
    return 1 if model_type == "mlp" and small else 2


def check_config_for(model_type: str, config: ModelConfig | None) -> ModelConfig:
    """``config`` (default :class:`ModelConfig`) checked against ``model_type``.

    Raises:
        ModelError: an unknown model type, or a ``cryptonets``-only field (filters, kernel, stride,
            hidden) set for another layout.
    """
    from capc.learning.model_types import check_model_type

    model_type = check_model_type(model_type)
    cfg = config or ModelConfig()
    if model_type != "cryptonets":
        default = ModelConfig()
        changed = [f for f in CRYPTONETS_ONLY_FIELDS if getattr(cfg, f) != getattr(default, f)]
        if changed:
            raise ModelError(f"{', '.join(changed)} only apply to model type 'cryptonets'; the "
                             f"{model_type!r} layout is fixed")
    return cfg


def build_party_model(model_type: str, input_shape: Sequence[int], num_classes: int = 10,
                      config: ModelConfig | None = None) -> Any:
    """Build (uncompiled) a party model of layout ``model_type`` (see :mod:`capc.learning.model_types`).

    ``cryptonets`` is :func:`build_cryptonets_model`; ``cryptonets-relu`` and ``mlp`` are
    :func:`capc.learning.architectures.build_cryptonets_layout` with ``config``'s L2 penalties on
    the kernels and the logits, and the stride of :func:`layout_conv_stride`.

    Raises:
        ModelError: unknown model type, a ``cryptonets``-only config field for another layout, or a
            bad shape.
    """
    from capc.learning.model_types import check_model_type

    model_type = check_model_type(model_type)
    cfg = check_config_for(model_type, config)
    if model_type == "cryptonets":
        return build_cryptonets_model(input_shape, num_classes, cfg)
    from capc.learning.architectures import build_cryptonets_layout

    return build_cryptonets_layout(model_type, input_shape, num_classes,
                                   conv_stride=layout_conv_stride(model_type, input_shape),
                                   l2=cfg.l2, logit_l2=cfg.logit_l2)


def train_party_model(x: np.ndarray, y: np.ndarray, *, num_classes: int = 10, seed: int = 0,
                      config: ModelConfig | None = None, verbose: int = 0,
                      validation_data: tuple[np.ndarray, np.ndarray] | None = None,
                      callbacks: Sequence[Any] = (), model_type: str = "cryptonets") -> Any:
    """Train a fresh party model on one party's data, seeded and deterministic.

    Args:
        x: images (N, H, W, C) float32 in [0, 1].
        y: integer labels (N,).
        num_classes: number of classes.
        seed: seed for initialisation and shuffling (see :func:`set_seed`).
        config: architecture and hyper-parameters (defaults: :class:`ModelConfig`); the ReLU
            layouts use only its training fields (:data:`TRAINING_FIELDS`).
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        validation_data: optional (x, y) reported per epoch (not used for model selection).
        callbacks: Keras callbacks, e.g. :class:`TqdmEpochs` for a progress bar.
        model_type: ``cryptonets`` (default), ``cryptonets-relu`` or ``mlp`` (see :func:`build_party_model`).

    Returns:
        The trained Keras model (compiled with Adam and cross-entropy on logits).

    Raises:
        ModelError: mismatched or empty arrays, labels out of range, an unknown model type.
    """
    x, y = check_xy(x, y, num_classes)
    cfg = check_config_for(model_type, config)
    set_seed(seed)
    model = build_party_model(model_type, x.shape[1:], num_classes, cfg)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True, verbose=verbose,
              validation_data=validation_data, callbacks=list(callbacks))
    return model


class TqdmEpochs(keras.callbacks.Callback):
    """Keras callback showing one tqdm bar over epochs, with the latest loss and accuracy."""

    def __init__(self, epochs: int, desc: str = "epochs") -> None:
        from tqdm.auto import tqdm

        super().__init__()
        self._bar = tqdm(total=int(epochs), desc=desc, unit="epoch", leave=False)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        logs = logs or {}
        self._bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy")})
        self._bar.update(1)

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()


def check_xy(x: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a training set: NHWC float images, matching int labels in ``0..num_classes-1``."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4:
        raise ModelError(f"images must be NHWC (4-D), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ModelError(f"labels must be 1-D with one label per image: {y.shape} vs {len(x)} images")
    if len(y) == 0:
        raise ModelError("cannot train on an empty dataset")
    if not np.issubdtype(y.dtype, np.integer):
        raise ModelError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ModelError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    if not np.isfinite(x).all():
        raise ModelError("images contain NaN or infinite values")
    return x, y.astype(np.int64)


def predict_logits(model: Any, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` (a Keras model or a :class:`~capc.learning.export.FrozenModel`) on ``x``."""
    x = np.asarray(x, dtype=np.float32)
    if hasattr(model, "predict_logits"):
        return model.predict_logits(x)
    out = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def save_model(model: Any, path: str | Path) -> Path:
    """Save a Keras model as ``.keras`` (the suffix is required), without optimizer state."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelError(f"Keras models are saved as '.keras' files, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if getattr(model, "optimizer", None) is not None:
        # Save an uncompiled copy: the optimizer state would triple the file and is not needed.
        clone = type(model).from_config(model.get_config())
        clone.set_weights(model.get_weights())
        model = clone
    with warnings.catch_warnings():
        # Keras' HDF5 writer calls np.array on its variables, which NumPy 2 flags as deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(path)
    return path


def load_model(path: str | Path) -> Any:
    """Load a party model: a ``.keras`` file (Keras model) or a frozen ``.pb`` graph.

    A ``.pb`` loads as a :class:`~capc.learning.export.FrozenModel` with ``predict_logits(x)``.

    Raises:
        ModelError: the file is missing, has another suffix, or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if path.suffix == ".pb":
        from capc.learning.export import FrozenModel

        return FrozenModel.load(path)
    if path.suffix != ".keras":
        raise ModelError(f"cannot load {path.name!r}: expected a '.keras' or '.pb' file")
    import capc.learning.layers  # noqa: F401  (registers capc>Square and capc>Polynomial)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a corrupt or foreign file
        raise ModelError(f"cannot load Keras model {str(path)!r}: {exc}") from exc
