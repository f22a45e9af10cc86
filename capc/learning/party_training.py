"""How one party trains its model: the architecture by name and its training length, in one value.

A :class:`PartyTraining` is what the fan-out ships to a worker (it pickles) and what retraining
reuses for the querying party, so a party's own model and its retrained model follow the same
recipe:

* the CryptoNets layouts (``cryptonets``, ``cryptonets-relu``, ``mlp``) train as capc's party models
  (:func:`capc.learning.models.train_party_model`: input-size-adapted layout, Adam, the
  :class:`~capc.learning.models.ModelConfig` hyper-parameters) — the models the encrypted protocol
  serves;
* VGG and ResNet train with the original experiments' recipe
  (:func:`capc.learning.architectures.train_architecture`), ``width`` scaling their channels.

``batch_size`` overrides the recipe's batch (the original's 128 gives a 120-sample digits party one
step per epoch); ``None`` keeps it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from capc.learning.errors import ModelError
from capc.learning.model_types import MODEL_TYPES


@dataclass(frozen=True)
class PartyTraining:
    """Architecture and training length of one party's model.

    Attributes:
        architecture: a name of :data:`capc.learning.architectures.ARCHITECTURES` (any case).
        epochs: training epochs (positive).
        width: channel multiplier of VGG / ResNet (the CryptoNets layouts are fixed and ignore it).
        batch_size: overrides the recipe's batch size; ``None`` keeps it.
        model_config: hyper-parameters of the CryptoNets layouts (``None``: ModelConfig's defaults);
            its ``epochs`` and ``batch_size`` are replaced by the fields above.
    """

    architecture: str = "cryptonets"
    epochs: int = 40
    width: float = 1.0
    batch_size: int | None = None
    model_config: Any = None

    def __post_init__(self) -> None:
        from capc.learning.architectures import canonical_name

        object.__setattr__(self, "architecture", canonical_name(self.architecture))
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            raise ModelError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.width, (int, float)) and self.width > 0):
            raise ModelError(f"width must be a positive number, got {self.width!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or not isinstance(self.batch_size, (int, np.integer))
                                            or self.batch_size < 1):
            raise ModelError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")

    @property
    def is_party_model(self) -> bool:
        """Whether this is one of capc's HE-servable party layouts (trained as a party model)."""
        return self.architecture in MODEL_TYPES

    def with_architecture(self, name: str) -> "PartyTraining":
        """The same training with another architecture."""
        return dataclasses.replace(self, architecture=name)

    def train(self, x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Any:
        """Train a fresh model on (x, y), seeded; returns the Keras model (logits out)."""
        if self.is_party_model:
            from capc.learning.models import ModelConfig, train_party_model

            base = self.model_config if self.model_config is not None else ModelConfig()
            cfg = dataclasses.replace(base, epochs=int(self.epochs),
                                      batch_size=int(self.batch_size or base.batch_size))
            return train_party_model(x, y, num_classes=num_classes, seed=seed, config=cfg,
                                     model_type=self.architecture)
        from capc.learning.architectures import recipe_for, train_architecture

        recipe = recipe_for(self.architecture)
        if self.batch_size is not None:
            recipe = dataclasses.replace(recipe, batch_size=int(self.batch_size))
        return train_architecture(self.architecture, x, y, num_classes=num_classes, seed=seed,
                                  epochs=int(self.epochs), width=float(self.width), recipe=recipe)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the recipe actually used included)."""
        from capc.learning.architectures import recipe_for

        d = {"architecture": self.architecture, "epochs": int(self.epochs), "width": float(self.width),
             "batch_size": self.batch_size}
        if self.is_party_model:
            d["model_config"] = self.model_config.to_dict() if self.model_config is not None else None
        else:
            d["recipe"] = recipe_for(self.architecture).to_dict()
        return d
