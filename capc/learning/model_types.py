"""The party-model layouts a default model set can use (``--model_type``), without importing TensorFlow.

* ``cryptonets`` — Conv -> Square -> Dense -> Square -> Dense: pure CKKS (the capc default; the
  shipped ``models/digits/`` set, see :mod:`capc.learning.models`);
* ``cryptonets-relu`` — the same with both squares replaced by ReLU (the original demo's default);
* ``mlp`` — Conv -> ReLU -> MaxPool -> Conv -> ReLU -> Dense -> ReLU -> Dense.

The two ReLU layouts need the garbled-circuit path for their ReLU / max-pool layers. They are built
by :func:`capc.learning.architectures.build_cryptonets_layout`; see ``models/README.md`` for their
shapes on 8x8 digits and on 28x28 images.
"""

from __future__ import annotations

from capc.learning.errors import ModelError

#: Every accepted model type, the capc default first.
MODEL_TYPES: tuple[str, ...] = ("cryptonets", "cryptonets-relu", "mlp")
DEFAULT_MODEL_TYPE = "cryptonets"

#: One-line description of each layout, for model cards and help texts.
MODEL_FAMILIES: dict[str, str] = {
    "cryptonets": "cryptonets (Conv -> Square -> Dense -> Square -> Dense, logits out)",
    "cryptonets-relu": "cryptonets-relu (Conv -> ReLU -> Dense -> ReLU -> Dense, logits out)",
    "mlp": "mlp (Conv -> ReLU -> MaxPool -> Conv -> ReLU -> Dense -> ReLU -> Dense, logits out)",
}


def check_model_type(model_type: str) -> str:
    """The canonical spelling of ``model_type`` (case-insensitive, ``_`` read as ``-``).

    Raises:
        ModelError: not one of :data:`MODEL_TYPES` (the message names them).
    """
    if isinstance(model_type, str):
        key = model_type.strip().lower().replace("_", "-")
        if key in MODEL_TYPES:
            return key
    raise ModelError(f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
