"""Party architectures by name: VGG and ResNet (small-image variants), the CryptoNets layouts, and
the training recipe of the original CaPC experiments.

Names (see :data:`ARCHITECTURES`):

* ``VGG3 VGG5 VGG7 VGG9 VGG11 VGG13 VGG16 VGG19`` — 3x3 convolutions with batch norm and ReLU,
  2x2 max-pool between stages, global average pooling, a Dense(C) classifier; ``VGGn`` has exactly
  n weight layers (convolutions + dense). VGG11..19 use the standard convolution stacks
  (8/10/13/16 convolutions) followed by Dense(512), Dense(512), Dense(C); the small ones shrink the
  stack (see :data:`VGG_CONFIGS`).
* ``ResNet6 ResNet8 ResNet10 ResNet12 ResNet14 ResNet16 ResNet18`` — a 3x3 stem convolution, stages
  of basic residual blocks (two 3x3 convolutions each; a 1x1 projection shortcut where the shape
  changes) at widths 64/128/256/512, global average pooling and Dense(C). ``ResNetn`` has n weight
  layers counting the stem, two per block and the classifier (projection shortcuts not counted):
  ResNet18 is the usual [2, 2, 2, 2] blocks, ResNet10 [1, 1, 1, 1] (:data:`RESNET_BLOCKS`).
* ``cryptonets`` (square activations), ``cryptonets-relu``, ``mlp`` — the three 28x28 layouts of the
  original demo (Conv2D 5x5 stride 2 'same' ...; see :func:`build_cryptonets_layout`).

``width`` scales every channel count (at least 1 channel), so tests and quick runs can use tiny
networks with the same structure. The recipe (:func:`recipe_for`) is the original's: SGD with
momentum 0.9, VGG lr 0.1 / weight decay 1e-4, ResNet lr 0.01 / weight decay 1e-5, batch 128,
ReduceLROnPlateau; the CryptoNets layouts keep capc's Adam recipe (:mod:`capc.learning.models`).
Weight decay is PyTorch's (``wd * w`` added to the gradient), i.e. an L2 penalty ``wd/2 * |w|^2``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from capc.learning.errors import ModelError
from capc.learning.models import check_xy, keras, set_seed
from capc.learning.layers import Square
from capc.learning.model_types import MODEL_TYPES

#: Convolution widths per VGG depth; "M" is a 2x2 max-pool. ``dense`` hidden layers follow.
VGG_CONFIGS: dict[str, tuple[tuple[Any, ...], int]] = {
    "VGG3": ((64, "M", 128, "M"), 0),
    "VGG5": ((64, "M", 128, "M", 256, "M"), 1),
    "VGG7": ((64, "M", 128, "M", 256, 256, "M", 512, "M"), 1),
    "VGG9": ((64, "M", 128, "M", 256, 256, "M", 512, 512, "M"), 2),
    "VGG11": ((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), 2),
    "VGG13": ((64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), 2),
    "VGG16": ((64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"), 2),
    "VGG19": ((64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
               512, 512, 512, 512, "M"), 2),
}

#: Basic blocks per stage (stage widths 64, 128, 256, 512; stride 2 at the start of stages 2..).
RESNET_BLOCKS: dict[str, tuple[int, ...]] = {
    "ResNet6": (1, 1),
    "ResNet8": (1, 1, 1),
    "ResNet10": (1, 1, 1, 1),
    "ResNet12": (2, 1, 1, 1),
    "ResNet14": (2, 2, 1, 1),
    "ResNet16": (2, 2, 2, 1),
    "ResNet18": (2, 2, 2, 2),
}

CRYPTONETS_LAYOUTS = MODEL_TYPES  # ("cryptonets", "cryptonets-relu", "mlp")

#: Every architecture name :func:`build_architecture` accepts.
ARCHITECTURES: tuple[str, ...] = tuple(VGG_CONFIGS) + tuple(RESNET_BLOCKS) + CRYPTONETS_LAYOUTS


@dataclass(frozen=True)
class TrainingRecipe:
    """Optimiser and schedule of one architecture family (as the original experiments)."""

    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    batch_size: int
    plateau_factor: float = 0.1
    plateau_patience: int = 10

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for result files and model cards."""
        return asdict(self)


VGG_RECIPE = TrainingRecipe("sgd", 0.1, 0.9, 1e-4, 128)
RESNET_RECIPE = TrainingRecipe("sgd", 0.01, 0.9, 1e-5, 128)
CRYPTONETS_RECIPE = TrainingRecipe("adam", 3e-3, 0.0, 1e-4, 32)


def canonical_name(name: str) -> str:
    """The registry spelling of an architecture name (case-insensitive), or a clear error."""
    if isinstance(name, str):
        lookup = {a.lower(): a for a in ARCHITECTURES}
        key = name.strip().lower().replace("_", "-")
        if key in lookup:
            return lookup[key]
    raise ModelError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")


def recipe_for(name: str) -> TrainingRecipe:
    """The training recipe of architecture ``name``."""
    name = canonical_name(name)
    if name in VGG_CONFIGS:
        return VGG_RECIPE
    if name in RESNET_BLOCKS:
        return RESNET_RECIPE
    return CRYPTONETS_RECIPE


def assign_architectures(spec: str | Sequence[str], num_parties: int) -> list[str]:
    """Architectures of parties 0..K-1, round robin over ``spec`` (``"VGG16,VGG19,VGG5"`` or a list).

    Raises:
        ModelError: empty spec, unknown name, or ``num_parties < 1``.
    """
    names = [s for s in (spec.split(",") if isinstance(spec, str) else list(spec)) if str(s).strip()]
    if not names:
        raise ModelError(f"--architectures is empty ({spec!r}); give e.g. VGG16,VGG19,VGG5")
    if isinstance(num_parties, bool) or not isinstance(num_parties, (int, np.integer)) or num_parties < 1:
        raise ModelError(f"num_parties must be a positive integer, got {num_parties!r}")
    names = [canonical_name(str(n)) for n in names]
    return [names[i % len(names)] for i in range(int(num_parties))]


def _width(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _reg(weight_decay: float) -> Any:
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None


def _check_shape(input_shape: Sequence[int], num_classes: int, width: float) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"input_shape must be (H, W, C) with positive sizes, got {tuple(input_shape)}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ModelError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not width > 0:
        raise ModelError(f"width must be positive, got {width!r}")
    return shape  # type: ignore[return-value]


def build_vgg(name: str, input_shape: Sequence[int], num_classes: int = 10, width: float = 1.0,
              weight_decay: float = VGG_RECIPE.weight_decay) -> Any:
    """A VGG network for small images; max-pools are skipped once the feature map is 1x1."""
    shape = _check_shape(input_shape, num_classes, width)
    convs, dense = VGG_CONFIGS[canonical_name(name)]
    reg = _reg(weight_decay)
    inputs = keras.Input(shape)
    h, size = inputs, min(shape[:2])
    for item in convs:
        if item == "M":
            if size >= 2:  # tiny inputs (8x8 digits) cannot take five halvings
                h = keras.layers.MaxPooling2D(2)(h)
                size //= 2
            continue
        h = keras.layers.Conv2D(_width(item, width), 3, padding="same", use_bias=False,
                                kernel_regularizer=reg)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    for _ in range(dense):
        h = keras.layers.Dense(_width(512, width), activation="relu", kernel_regularizer=reg)(h)
    outputs = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(h)
    return keras.Model(inputs, outputs, name=canonical_name(name))


def build_resnet(name: str, input_shape: Sequence[int], num_classes: int = 10, width: float = 1.0,
                 weight_decay: float = RESNET_RECIPE.weight_decay) -> Any:
    """A CIFAR-style ResNet of basic blocks (3x3 stem, no initial max-pool)."""
    shape = _check_shape(input_shape, num_classes, width)
    blocks = RESNET_BLOCKS[canonical_name(name)]
    reg = _reg(weight_decay)

    def conv(filters: int, kernel: int, stride: int, tag: str) -> Any:
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                   kernel_regularizer=reg, name=tag)

    inputs = keras.Input(shape)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(conv(_width(64, width), 3, 1, "stem")(inputs)))
    channels = _width(64, width)
    for stage, count in enumerate(blocks):
        filters = _width(64 * 2 ** stage, width)
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            tag = f"s{stage}b{block}"
            y = conv(filters, 3, stride, tag + "_conv1")(h)
            y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
            y = keras.layers.BatchNormalization()(conv(filters, 3, 1, tag + "_conv2")(y))
            shortcut = h
            if stride != 1 or channels != filters:
                shortcut = keras.layers.BatchNormalization()(conv(filters, 1, stride, tag + "_proj")(h))
            h = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
            channels = filters
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(h)
    return keras.Model(inputs, outputs, name=canonical_name(name))


def build_cryptonets_layout(name: str, input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                            width: float = 1.0, *, conv_stride: int = 2, l2: float = 0.0,
                            logit_l2: float = 0.0) -> Any:
    """The original demo's layouts (28x28x1 input; 'same' padding; logits out).

    * ``cryptonets``: Conv2D 5x5x5 s2 + bias -> x^2 -> flatten 980 -> Dense 100 + bias -> x^2 -> Dense C.
    * ``cryptonets-relu``: the same with both squares replaced by ReLU.
    * ``mlp``: Conv2D 5x5x5 s2 -> ReLU -> MaxPool 3x3 s3 'valid' -> Conv2D 5x5x50 s2 -> ReLU ->
      flatten 200 -> Dense 100 -> ReLU -> Dense C + bias (no biases where the original has none).

    Args:
        name: ``cryptonets``, ``cryptonets-relu`` or ``mlp``.
        input_shape: (H, W, C).
        num_classes: logits out.
        width: scales every channel count (at least 1 channel).
        conv_stride: stride of every convolution (the original's 2). The default models use 1 for
            ``mlp`` on 8x8 digits, where stride 2 leaves a 1x1 map after the pool (see
            ``models/README.md``).
        l2: L2 penalty on every kernel (Keras ``L2(l2)``; 0 = none).
        logit_l2: L2 activity penalty on the logits (0 = none). Neither penalty changes the
            inference graph.

    Raises:
        ModelError: unknown name, bad shape, class count, width or stride, or an input too small
            for the pooling window.
    """
    shape = _check_shape(input_shape, num_classes, width)
    name = canonical_name(name)
    if name not in CRYPTONETS_LAYOUTS:
        raise ModelError(f"{name!r} is not a CryptoNets layout; choose one of {', '.join(CRYPTONETS_LAYOUTS)}")
    if isinstance(conv_stride, bool) or not isinstance(conv_stride, (int, np.integer)) or conv_stride < 1:
        raise ModelError(f"conv_stride must be a positive integer, got {conv_stride!r}")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    logit_reg = keras.regularizers.L2(logit_l2) if logit_l2 > 0 else None
    inputs = keras.Input(shape, name="input")
    if name == "mlp":
        if -(-min(shape[:2]) // conv_stride) < 3:
            raise ModelError(f"input {shape} with conv_stride {conv_stride} is too small for the 3x3 max-pool")
        h = keras.layers.Conv2D(_width(5, width), 5, strides=conv_stride, padding="same", use_bias=False,
                                kernel_regularizer=reg, name="conv_1")(inputs)
        h = keras.layers.ReLU(name="relu_1")(h)
        h = keras.layers.MaxPooling2D(3, strides=3, padding="valid", name="pool")(h)
        h = keras.layers.Conv2D(_width(50, width), 5, strides=conv_stride, padding="same", use_bias=False,
                                kernel_regularizer=reg, name="conv_2")(h)
        h = keras.layers.Flatten(name="flatten")(keras.layers.ReLU(name="relu_2")(h))
        h = keras.layers.Dense(_width(100, width), use_bias=False, kernel_regularizer=reg, name="dense")(h)
        h = keras.layers.ReLU(name="relu_3")(h)
    else:
        def act(i: int) -> Any:
            return Square(name=f"square_{i}") if name == "cryptonets" else keras.layers.ReLU(name=f"relu_{i}")

        h = keras.layers.Conv2D(_width(5, width), 5, strides=conv_stride, padding="same",
                                kernel_regularizer=reg, name="conv")(inputs)
        h = keras.layers.Flatten(name="flatten")(act(1)(h))
        h = act(2)(keras.layers.Dense(_width(100, width), kernel_regularizer=reg, name="dense")(h))
    outputs = keras.layers.Dense(num_classes, kernel_regularizer=reg, activity_regularizer=logit_reg,
                                 name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def build_architecture(name: str, input_shape: Sequence[int], num_classes: int = 10,
                       width: float = 1.0) -> Any:
    """Build architecture ``name`` (see :data:`ARCHITECTURES`) for ``input_shape`` (H, W, C).

    Raises:
        ModelError: unknown name, bad shape, class count or width.
    """
    name = canonical_name(name)
    if name in VGG_CONFIGS:
        return build_vgg(name, input_shape, num_classes, width)
    if name in RESNET_BLOCKS:
        return build_resnet(name, input_shape, num_classes, width)
    return build_cryptonets_layout(name, input_shape, num_classes, width)


def count_weight_layers(model: Any) -> int:
    """Convolutions and dense layers of ``model``, projection shortcuts (``*_proj``) excluded."""
    return sum(1 for layer in model.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not layer.name.endswith("_proj"))


def compile_with_recipe(model: Any, recipe: TrainingRecipe) -> Any:
    """Compile ``model`` with ``recipe``'s optimiser and cross-entropy on logits; returns it."""
    if recipe.optimizer == "sgd":
        opt = keras.optimizers.SGD(recipe.learning_rate, momentum=recipe.momentum)
    else:
        opt = keras.optimizers.Adam(recipe.learning_rate)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def train_architecture(name: str, x: np.ndarray, y: np.ndarray, *, num_classes: int = 10, seed: int = 0,
                       epochs: int = 1, width: float = 1.0, recipe: TrainingRecipe | None = None,
                       validation_data: tuple[np.ndarray, np.ndarray] | None = None,
                       verbose: int = 0, callbacks: Sequence[Any] = ()) -> Any:
    """Build and train architecture ``name`` with the original recipe, seeded.

    ReduceLROnPlateau watches the validation loss when ``validation_data`` is given, else the
    training loss.

    Raises:
        ModelError: unknown architecture, bad arrays or ``epochs < 1``.
    """
    x, y = check_xy(x, y, num_classes)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ModelError(f"epochs must be a positive integer, got {epochs!r}")
    recipe = recipe or recipe_for(name)
    set_seed(seed)
    model = compile_with_recipe(build_architecture(name, x.shape[1:], num_classes, width), recipe)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss" if validation_data is not None else "loss",
        factor=recipe.plateau_factor, patience=recipe.plateau_patience)
    model.fit(x, y, epochs=int(epochs), batch_size=recipe.batch_size, shuffle=True, verbose=verbose,
              validation_data=validation_data, callbacks=[plateau, *callbacks])
    return model
