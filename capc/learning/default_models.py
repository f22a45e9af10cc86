"""Training and saving sets of party models, and the default models a CaPC run uses.

A *model set* is one model per party, trained on disjoint parts of one dataset's training split,
each saved as ``party-<i>.keras`` (Keras), ``party-<i>.pb`` (frozen graph, see
:mod:`capc.learning.export`) and ``party-<i>.card.json`` / ``.card.md`` (see :mod:`capc.learning.cards`).

The repository ships the default set ``models/digits/``: digits, 4 parties, IID partition, party
``i`` trained with seed ``DEFAULT_SEED + i``. Party 0 is the default querying party and parties 1..3
the answering parties. Each set has one layout (*model type*, see :mod:`capc.learning.model_types`):
``models/digits/`` is ``cryptonets``; ``models/digits-cryptonets-relu/`` and ``models/digits-mlp/``
are the original demo's ReLU layouts, with the same data split, partition and seeds.
:func:`load_default_models` serves up to 4 parties from the shipped set of a model type (re-training
any missing file with the same seed and partition, which reproduces the same weights); for more
parties it trains a whole new set on an ``n``-way partition, so that the parties' data stay
disjoint, and caches it (``$CAPC_CACHE_DIR`` or ``~/.cache/capc``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from capc.learning.errors import ModelError
from capc.learning.model_types import DEFAULT_MODEL_TYPE, MODEL_TYPES, check_model_type  # noqa: F401 (re-exported)

SHIPPED_DATASET = "digits"
SHIPPED_PARTIES = 4
DEFAULT_SEED = 0


def party_seed(base_seed: int, party: int) -> int:
    """Training seed of ``party`` in a set trained with ``base_seed``."""
    return int(base_seed) + int(party)


def set_name(dataset: str, n_parties: int, scheme: str = "iid", model_type: str = DEFAULT_MODEL_TYPE) -> str:
    """Directory name of a model set: ``<dataset>`` for the 4-party IID ``cryptonets`` default,
    ``<dataset>-<model_type>`` for the other layouts' 4-party IID sets, and
    ``<dataset>[-<model_type>]-<n>p-<scheme>`` otherwise (``models/digits``, ``models/digits-mlp``,
    ``digits-10p-weak``, ``digits-mlp-10p-weak``).

    Raises:
        ModelError: an unknown model type.
    """
    model_type = check_model_type(model_type)
    prefix = dataset if model_type == DEFAULT_MODEL_TYPE else f"{dataset}-{model_type}"
    if n_parties == SHIPPED_PARTIES and scheme == "iid":
        return prefix
    return f"{prefix}-{n_parties}p-{scheme}"


def repo_models_dir() -> Path:
    """The ``models/`` directory of this source tree (where the shipped default set lives)."""
    return Path(__file__).resolve().parents[2] / "models"


def default_models_dir() -> Path:
    """Where default models are looked for: ``$CAPC_MODELS_DIR``, else the source tree's ``models/``
    (when capc runs from a source checkout or an editable install), else the cache directory."""
    env = os.environ.get("CAPC_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    repo = repo_models_dir()
    return repo if repo.is_dir() else cache_models_dir()


def cache_models_dir() -> Path:
    """Writable directory for models trained on first use: ``$CAPC_CACHE_DIR/models`` or ``~/.cache/capc/models``."""
    env = os.environ.get("CAPC_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "capc") / "models"


def model_paths(directory: str | Path, party: int) -> dict[str, Path]:
    """The four files of one party in a set directory."""
    d = Path(directory)
    stem = f"party-{int(party)}"
    return {"keras": d / f"{stem}.keras", "pb": d / f"{stem}.pb", "card": d / f"{stem}.card.json",
            "card_md": d / f"{stem}.card.md"}


def make_partition(dataset: Any, n_parties: int, scheme: str = "iid", *,
                   weak_classes: Sequence[int] = (1, 2), weak_class_ratio: float = 0.1,
                   num_querying_parties: int = 1) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Partition ``dataset``'s training split; returns the index arrays and a description for cards."""
    from capc.learning.partition import iid_partition, weak_class_partition

    if scheme == "iid":
        parts = iid_partition(len(dataset.y_train), n_parties)
        info: dict[str, Any] = {"scheme": "iid", "num_parties": n_parties,
                                "description": "contiguous equal slices of the training split, "
                                               "remainder to the last party"}
    elif scheme == "weak":
        parts = weak_class_partition(dataset.y_train, n_parties, num_querying_parties, weak_classes,
                                     weak_class_ratio, dataset.num_classes)
        info = {"scheme": "weak", "num_parties": n_parties, "weak_classes": [int(c) for c in weak_classes],
                "weak_class_ratio": float(weak_class_ratio), "num_querying_parties": int(num_querying_parties),
                "description": "querying parties get weak_class_ratio of a fair share of each weak class"}
    else:
        raise ModelError(f"unknown partition scheme {scheme!r}; choose 'iid' or 'weak'")
    return parts, info


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary sibling and rename, so concurrent readers never see half a file."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def train_and_save_party(dataset: Any, parts: Sequence[np.ndarray], partition_info: dict[str, Any],
                         party: int, out_dir: str | Path, *, seed: int, config: Any = None,
                         verbose: int = 0, callbacks: Sequence[Any] = (),
                         model_type: str = DEFAULT_MODEL_TYPE) -> dict[str, Any]:
    """Train party ``party`` (layout ``model_type``) on its part of the training split and write its
    four files.

    Returns:
        The model card (also written as ``party-<i>.card.json``/``.md``).

    Raises:
        ModelError: party out of range, unknown model type, or a config field the layout does not use.
    """
    from capc.learning.cards import evaluate_for_card, make_card, write_card
    from capc.learning.export import export_frozen_graph
    from capc.learning.models import TRAINING_FIELDS, check_config_for, save_model, train_party_model

    model_type = check_model_type(model_type)
    if not 0 <= party < len(parts):
        raise ModelError(f"party {party} is outside 0..{len(parts) - 1}")
    cfg = check_config_for(model_type, config)
    if model_type == DEFAULT_MODEL_TYPE:
        cfg = cfg.resolved(dataset.input_shape)
        card_config = cfg.to_dict()
    else:  # the layout is fixed: record only the training fields it uses
        card_config = {k: v for k, v in cfg.to_dict().items() if k in TRAINING_FIELDS}
    idx = parts[party]
    x, y = dataset.x_train[idx], dataset.y_train[idx]
    model = train_party_model(x, y, num_classes=dataset.num_classes, seed=seed, config=cfg,
                              verbose=verbose, callbacks=callbacks, model_type=model_type)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = model_paths(out, party)
    _atomic(paths["keras"], lambda p: save_model(model, p))
    _atomic(paths["pb"], lambda p: export_frozen_graph(model, p))
    info = dict(partition_info, party=int(party), num_samples=int(len(idx)))
    if partition_info.get("scheme") == "iid" and len(idx):
        info["index_range"] = [int(idx[0]), int(idx[-1]) + 1]
    card = make_card(name=f"{out.name}/party-{party}", model=model, dataset=dataset, party=party,
                     partition=info, train_labels=y, seed=seed, config=card_config,
                     evaluation=evaluate_for_card(model, dataset, x, model_type),
                     files={"keras": paths["keras"], "pb": paths["pb"]}, model_type=model_type)
    write_card(card, paths["card"])
    return card


def card_model_type(card: dict[str, Any]) -> str:
    """The layout a card describes (cards written before model types existed are ``cryptonets``)."""
    return str(card.get("model", {}).get("model_type", DEFAULT_MODEL_TYPE))


def _check_card(card: dict[str, Any], dataset: str, n_parties: int, party: int, path: Path,
                model_type: str = DEFAULT_MODEL_TYPE) -> None:
    part = card.get("data", {}).get("partition", {})
    found = (card.get("data", {}).get("dataset"), part.get("num_parties"), part.get("party"),
             card_model_type(card))
    want = (dataset, n_parties, party, model_type)
    if found != want:
        raise ModelError(f"{path} describes dataset/parties/party/model type {found}, expected "
                         f"{want}; delete the set's files to retrain it")


def default_model_paths(n_parties: int, models_dir: str | Path | None = None, *, train_missing: bool = True,
                        seed: int = DEFAULT_SEED, verbose: int = 0, dataset: str = SHIPPED_DATASET,
                        data_dir: str | Path | None = None,
                        on_train: Callable[[str], None] | None = None,
                        model_type: str = DEFAULT_MODEL_TYPE) -> list[Path]:
    """Paths of the ``.keras`` files of the default models of parties ``0..n_parties-1``.

    ``dataset`` (default digits) selects the training data; only digits has shipped sets, other
    datasets are trained into the cache (or ``models_dir``) on first use, from the files in ``data_dir``;
    ``on_train`` is told before any training starts (and only then). ``n_parties`` counts every
    party holding a model: the querying party (party 0) and the answering
    parties. ``model_type`` selects the layout (:data:`MODEL_TYPES`): up to 4 parties come from the
    shipped ``models/digits`` (``cryptonets``), ``models/digits-cryptonets-relu`` or
    ``models/digits-mlp`` set; more parties use a set trained on an ``n_parties``-way partition
    under ``models_dir`` (default: the cache directory).

    Raises:
        ModelError: bad ``n_parties``, an unknown model type, a missing model with
            ``train_missing=False``, or a card that does not match the set it sits in.
    """
    from capc.learning.cards import read_card

    if isinstance(n_parties, bool) or not isinstance(n_parties, (int, np.integer)) or n_parties < 1:
        raise ModelError(f"n_parties must be a positive integer, got {n_parties!r}")
    model_type = check_model_type(model_type)
    n_parties = int(n_parties)
    set_parties = max(n_parties, SHIPPED_PARTIES)
    name = set_name(dataset, set_parties, model_type=model_type)
    if models_dir is not None:
        base = Path(models_dir)
    elif set_parties == SHIPPED_PARTIES and dataset == SHIPPED_DATASET:
        base = default_models_dir()
    else:
        base = cache_models_dir()
    directory = base / name
    missing = [i for i in range(n_parties)
               if not all(p.is_file() for k, p in model_paths(directory, i).items() if k != "card_md")]
    if missing:
        if not train_missing:
            raise ModelError(f"default models for parties {missing} are missing from {directory}; "
                             "run scripts/train_models.py to create them")
        if not os.access(base if base.exists() else base.parent, os.W_OK):
            directory = cache_models_dir() / name  # read-only install: train into the cache instead
            missing = [i for i in range(n_parties) if not model_paths(directory, i)["keras"].is_file()]
        if missing:
            if on_train is not None:
                on_train(f"training the default {dataset} {model_type} models of parties {missing} into "
                         f"{directory} (first use only)")
            train_model_set(dataset, set_parties, directory, data_dir=data_dir, parties=missing, seed=seed,
                            verbose=verbose, model_type=model_type)
    for i in range(n_parties):
        paths = model_paths(directory, i)
        _check_card(read_card(paths["card"]), dataset, set_parties, i, paths["card"], model_type)
    return [model_paths(directory, i)["keras"] for i in range(n_parties)]


def load_default_models(n_parties: int, models_dir: str | Path | None = None, *, train_missing: bool = True,
                        seed: int = DEFAULT_SEED, verbose: int = 0,
                        model_type: str = DEFAULT_MODEL_TYPE) -> list[Any]:
    """Load the default Keras models of parties ``0..n_parties-1`` (see :func:`default_model_paths`)."""
    from capc.learning.models import load_model

    return [load_model(p) for p in default_model_paths(n_parties, models_dir, train_missing=train_missing,
                                                       seed=seed, verbose=verbose, model_type=model_type)]


def train_model_set(dataset_name: str, n_parties: int, out_dir: str | Path, *, data_dir: str | Path | None = None,
                    num_query_pool: int | None = None,
                    scheme: str = "iid", weak_classes: Sequence[int] = (1, 2), weak_class_ratio: float = 0.1,
                    num_querying_parties: int = 1, parties: Sequence[int] | None = None,
                    seed: int = DEFAULT_SEED, config: Any = None, verbose: int = 0,
                    progress: bool = False, model_type: str = DEFAULT_MODEL_TYPE) -> list[dict[str, Any]]:
    """Train (and save into ``out_dir``) the models of ``parties`` (default: all) of one set.

    Party ``i`` is trained with seed ``party_seed(seed, i)``; every party has layout ``model_type``
    (:data:`MODEL_TYPES`; the data split and partition do not depend on it). With ``progress``, tqdm
    bars show the parties and each party's epochs.

    Returns:
        The cards of the trained parties, in order.

    Raises:
        ModelError: an unknown model type, parties out of range, or a config field the layout does
            not use (checked before the data are loaded).
    """
    from capc.learning.datasets import load_dataset
    from capc.learning.models import check_config_for

    model_type = check_model_type(model_type)
    check_config_for(model_type, config)
    dataset = load_dataset(dataset_name, data_dir, num_query_pool)
    parts, info = make_partition(dataset, n_parties, scheme, weak_classes=weak_classes,
                                 weak_class_ratio=weak_class_ratio, num_querying_parties=num_querying_parties)
    todo = list(range(n_parties)) if parties is None else [int(p) for p in parties]
    bad = [p for p in todo if not 0 <= p < n_parties]
    if bad:
        raise ModelError(f"parties {bad} are outside 0..{n_parties - 1}")
    cards = []
    if progress:
        from tqdm.auto import tqdm

        from capc.learning.models import ModelConfig, TqdmEpochs

        epochs = (config or ModelConfig()).epochs
        bar = tqdm(todo, desc=f"{dataset.name} {model_type}: parties", unit="party")
        for party in bar:
            cb = TqdmEpochs(epochs, desc=f"party {party}")
            card = train_and_save_party(dataset, parts, info, party, out_dir, seed=party_seed(seed, party),
                                        config=config, verbose=verbose, callbacks=[cb], model_type=model_type)
            cb.close()
            bar.set_postfix(acc=card["evaluation"]["accuracy"],
                            max_logit=card["evaluation"]["max_abs_logit_test"])
            cards.append(card)
    else:
        for party in todo:
            cards.append(train_and_save_party(dataset, parts, info, party, out_dir,
                                              seed=party_seed(seed, party), config=config, verbose=verbose,
                                              model_type=model_type))
    return cards
