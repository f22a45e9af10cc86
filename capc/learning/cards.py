"""Model cards: a JSON record and a short Markdown page describing one trained party model.

A card records what the HE side and a reader need: the data and partition the model was trained on,
the seed and hyper-parameters, held-out accuracy, the largest |logit| observed, the declared input domain and
the sound logit bound over it (what sizes the answering party's mask), the frozen graph's node names, file hashes, date and library
versions. ``party-<i>.card.json`` is the machine-readable form, ``party-<i>.card.md`` the human one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from capc.learning.errors import ModelError

CARD_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine a trained model's weights."""
    import keras
    import sklearn
    import tensorflow as tf

    try:
        import capc

        capc_version = getattr(capc, "__version__", "unknown")
    except ImportError:  # pragma: no cover
        capc_version = "unknown"
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "capc": capc_version}


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evaluate_for_card(model: Any, dataset: Any, x_train: np.ndarray, model_type: str = "cryptonets"
                      ) -> dict[str, Any]:
    """Accuracy on the evaluation split, and the max |logit| on the test split and the training data.

    ``derived_logit_bound`` is the sound bound of :mod:`capc.he.bounds`; it is ``None`` when the HE
    stack is not installed, or for a ReLU layout (``model_type`` other than ``cryptonets``) that the
    installed :mod:`capc.he` cannot compile or bound.
    """
    from capc.learning.metrics import accuracy, balanced_accuracy, per_class_accuracy
    from capc.learning.models import predict_logits

    test_logits = predict_logits(model, dataset.x_test)
    eval_logits = test_logits[dataset.num_query_pool:]
    train_logits = predict_logits(model, x_train)
    per_class = per_class_accuracy(dataset.y_eval, eval_logits, dataset.num_classes)
    return {
        "split": "evaluation (test split after the query pool)",
        "num_samples": int(len(dataset.y_eval)),
        "accuracy": round(accuracy(dataset.y_eval, eval_logits), 6),
        "balanced_accuracy": round(balanced_accuracy(dataset.y_eval, eval_logits, dataset.num_classes), 6),
        "per_class_accuracy": [None if np.isnan(v) else round(float(v), 6) for v in per_class],
        "query_pool_accuracy": (round(accuracy(dataset.y_query, test_logits[:dataset.num_query_pool]), 6)
                                if dataset.num_query_pool else None),
        "max_abs_logit_test": round(float(np.abs(test_logits).max()), 4),
        "max_abs_logit_train": round(float(np.abs(train_logits).max()), 4),
        "derived_logit_bound": (None if (bound := _derived_bound(model, model_type == "cryptonets")) is None
                                else round(bound, 4)),
    }


def _derived_bound(model: Any, polynomial: bool = True) -> float | None:
    """The sound bound on |logit| over the declared input domain (what sizes the mask), or None
    when the HE stack is not installed or, for a non-polynomial model (ReLU, max-pool), when it
    cannot compile or bound the model."""
    try:
        from capc.he import compile_model
        from capc.he.bounds import PIXELS, derive_logit_bound
        from capc.he.errors import HEError
    except ImportError:
        return None
    if polynomial:
        return derive_logit_bound(compile_model(model), PIXELS)
    try:
        return derive_logit_bound(compile_model(model), PIXELS)
    except HEError:
        return None


def _pixels() -> dict[str, Any]:
    from capc.learning.datasets import PIXEL_DOMAIN

    return {"lo": PIXEL_DOMAIN[0], "hi": PIXEL_DOMAIN[1], "description": "pixels scaled to [0, 1]"}


def make_card(*, name: str, model: Any, dataset: Any, party: int, partition: dict[str, Any],
              train_labels: np.ndarray, seed: int, config: dict[str, Any], evaluation: dict[str, Any],
              files: dict[str, Path], model_type: str = "cryptonets") -> dict[str, Any]:
    """Assemble the card dictionary (see module docstring); ``files`` maps kind -> written path,
    ``model_type`` names the layout (see :mod:`capc.learning.model_types`)."""
    from capc.learning.export import INPUT_NODE, OUTPUT_NODE
    from capc.learning.model_types import MODEL_FAMILIES, check_model_type

    model_type = check_model_type(model_type)

    import keras

    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue  # functional models list their input; Sequential ones do not
        entry: dict[str, Any] = {"name": layer.name, "type": type(layer).__name__}
        cfg = layer.get_config()
        for key in ("filters", "kernel_size", "pool_size", "strides", "padding", "units"):
            if key in cfg:
                entry[key] = list(cfg[key]) if isinstance(cfg[key], (tuple, list)) else cfg[key]
        if cfg.get("use_bias") is False:
            entry["use_bias"] = False
        layers.append(entry)
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=dataset.num_classes)
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "party": int(party),
        "model": {
            "model_type": model_type,
            "family": MODEL_FAMILIES[model_type],
            "input_shape": [None, *dataset.input_shape],
            "num_classes": int(dataset.num_classes),
            "num_params": int(model.count_params()),
            "layers": layers,
            "frozen_graph": {"input_node": INPUT_NODE, "output_node": OUTPUT_NODE,
                             "input_tensor": f"{INPUT_NODE}:0", "output_tensor": f"{OUTPUT_NODE}:0",
                             "layout": "NHWC, float32 in [0, 1]"},
            "input_domain": _pixels(),
        },
        "data": {
            "dataset": dataset.name,
            "num_train_samples": int(len(train_labels)),
            "train_label_counts": [int(c) for c in counts],
            "partition": partition,
        },
        "evaluation": evaluation,
        "training": {"seed": int(seed), "optimizer": "Adam",
                     "loss": "sparse categorical cross-entropy on logits", **config},
        "files": {kind: {"name": Path(p).name, "sha256": sha256_of(p), "bytes": Path(p).stat().st_size}
                  for kind, p in files.items()},
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": library_versions(),
    }


def card_markdown(card: dict[str, Any]) -> str:
    """A short human-readable page for a card."""
    ev, data, tr, mdl = card["evaluation"], card["data"], card["training"], card["model"]
    part = data["partition"]
    arch = " -> ".join(
        f"{l['type']}({', '.join(f'{k}={v}' for k, v in l.items() if k not in ('name', 'type'))})"
        if len(l) > 2 else l["type"] for l in mdl["layers"])
    files = ", ".join(f"`{f['name']}` ({f['bytes']} B)" for f in card["files"].values())
    return "\n".join([
        f"# {card['name']} (party {card['party']})",
        "",
        f"- **Model** (`{mdl.get('model_type', 'cryptonets')}`): {arch}; {mdl['num_params']} parameters; "
        f"input {mdl['input_shape']} "
        f"({mdl['frozen_graph']['layout']}); frozen graph nodes `{mdl['frozen_graph']['input_node']}` -> "
        f"`{mdl['frozen_graph']['output_node']}`.",
        f"- **Data**: {data['dataset']}, {data['num_train_samples']} training samples, partition "
        f"`{part['scheme']}` (party {part['party']} of {part['num_parties']}).",
        f"- **Held-out accuracy**: {ev['accuracy']:.4f} (balanced {ev['balanced_accuracy']:.4f}) on "
        f"{ev['num_samples']} samples of the {ev['split']}.",
        f"- **Logit bound**: max |logit| = {ev['max_abs_logit_test']} on the test split, "
        f"{ev['max_abs_logit_train']} on the training data"
        + (f"; sound bound over the input domain {ev['derived_logit_bound']}."
           if ev.get("derived_logit_bound") is not None
           else "; no sound bound over the input domain recorded (capc.he could not bound this model "
                "when the card was written)."),
        f"- **Training**: seed {tr['seed']}, {tr['epochs']} epochs, batch {tr['batch_size']}, "
        f"Adam lr {tr['learning_rate']}, L2 {tr['l2']}, logit L2 {tr['logit_l2']}.",
        f"- **Files**: {files}.",
        f"- **Created**: {card['created']} with " + ", ".join(f"{k} {v}" for k, v in card["versions"].items())
        + ".",
        "",
    ])


def write_card(card: dict[str, Any], json_path: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.card.json`` and ``<stem>.card.md``; ``json_path`` must end in ``.card.json``."""
    json_path = Path(json_path)
    if not json_path.name.endswith(".card.json"):
        raise ModelError(f"card files are named '<model>.card.json', got {json_path.name!r}")
    md_path = json_path.with_name(json_path.name[: -len(".json")] + ".md")
    json_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(card_markdown(card), encoding="utf-8")
    return json_path, md_path


def read_card(path: str | Path) -> dict[str, Any]:
    """Read a ``.card.json`` file.

    Raises:
        ModelError: missing file or invalid JSON.
    """
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"model card {str(path)!r} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model card {str(path)!r}: {exc}") from exc
    if not isinstance(card, dict) or card.get("card_version") != CARD_VERSION:
        raise ModelError(f"{str(path)!r} is not a version-{CARD_VERSION} capc model card")
    return card
