"""Datasets for capc's learning experiments: scikit-learn's digits (default) and MNIST from local files.

Every loader returns a :class:`Dataset`: float32 images in [0, 1] in NHWC layout and int64 labels.
As in the original CaPC learning code, the *test* split is cut in two: its first ``num_query_pool``
samples are the unlabelled pool that querying parties draw their queries from, and the rest is the
evaluation set on which accuracies are reported.

* ``digits`` — the 1,797 8x8 images bundled with scikit-learn (always available). It has no official
  train/test split, so capc fixes one: a permutation drawn with ``numpy.random.RandomState(0)``
  (MT19937, stable across NumPy versions), the first 1,200 samples for training, the remaining 597
  for testing, of which the first 300 form the query pool.
* ``digits28`` — the same digits and split, each image enlarged 3x (nearest neighbour, 24x24) and
  centred in a 28x28 frame like MNIST's: MNIST-shaped inputs for the 28x28 CryptoNets network on a
  machine without the MNIST files (benchmarks, demos).
* ``mnist`` — read only from local files (no download): ``mnist.npz`` as Keras saves it (arrays
  ``x_train``, ``y_train``, ``x_test``, ``y_test``) or the four IDX files of LeCun et al. (optionally
  gzipped). The query pool is the first 9,000 test images, as in the original code.
* ``fashion-mnist`` — the same four IDX file names (Zalando's release; Debian's
  ``dataset-fashion-mnist`` package installs them under ``/usr/share/datasets/fashion-mnist``, which is
  searched when no ``data_dir`` is given). Query pool: the first 9,000 test images.
* ``svhn`` — the cropped-digits files ``train_32x32.mat``, ``test_32x32.mat`` and (optional, used
  when present) ``extra_32x32.mat``: ``X`` of shape (32, 32, 3, n) uint8 and ``y`` of shape (n, 1)
  with the digit 0 stored as 10 (mapped back to 0). As in the original, the private training data is
  train + extra and the query pool is the first 10,000 test images.
* ``cifar10`` — the python pickle batches of ``cifar-10-batches-py`` (``data_batch_1`` .. ``_5``,
  ``test_batch``; rows of 3,072 bytes, channel-major). Query pool: the first 9,000 test images.

Scaling: MNIST-like sets are pixels / 255 in [0, 1]; SVHN and CIFAR-10 are pixels / 255 then
standardised per channel with the original code's mean/std (:data:`CHANNEL_STATS`). Each dataset's
*input domain* (the box every pixel lies in after scaling) is :func:`input_domain` — the one place the
HE range checks and the experiments read it from.

Nothing is downloaded unless ``allow_download=True`` is passed (then through ``tf.keras.datasets`` or
``tensorflow_datasets``, which need network access); tests never download.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capc.learning.errors import DatasetError

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES = ("digits", "digits28", "mnist", "fashion-mnist", "svhn", "cifar10")

#: Default size of the query pool (first part of the test split) per dataset, as the original's.
DEFAULT_QUERY_POOL = {"digits": 300, "digits28": 300, "mnist": 9000, "fashion-mnist": 9000,
                      "svhn": 10000, "cifar10": 9000}

#: Per-channel (mean, std) of pixels/255 used by the original code to standardise colour datasets.
CHANNEL_STATS = {
    "svhn": ((0.43768212, 0.44376972, 0.47280444), (0.19803013, 0.20101563, 0.19703615)),
    "cifar10": ((0.49139969, 0.48215842, 0.44653093), (0.24703223, 0.24348513, 0.26158784)),
}

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def input_domain(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) bounds of a dataset's scaled pixels: [0, 1], or the standardised box.

    Raises:
        DatasetError: unknown dataset name.
    """
    key = _canonical(name)
    if key in CHANNEL_STATS:
        mean, std = (np.asarray(v, dtype=np.float64) for v in CHANNEL_STATS[key])
        return (0.0 - mean) / std, (1.0 - mean) / std
    return np.zeros(1), np.ones(1)


def canonical_dataset_name(name: str) -> str:
    """The registry spelling of a dataset name (``fashion_mnist`` -> ``fashion-mnist``), or a
    :class:`DatasetError` listing the names capc knows."""
    return _canonical(name)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, got {name!r}")
    key = name.lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return key

DIGITS_TRAIN_SIZE = 1200
DIGITS_SPLIT_SEED = 0

MNIST_NPZ = "mnist.npz"
#: The four IDX files (each may also be stored with a ``.gz`` suffix or a '.' before ``idx``).
MNIST_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True, eq=False)  # arrays have no useful ==
class Dataset:
    """Train and test arrays of one dataset, with the query-pool/evaluation cut of the test split.

    Attributes:
        name: dataset name (one of :data:`DATASET_NAMES`).
        x_train, y_train: training images (N, H, W, C) float32 in [0, 1] and int64 labels.
        x_test, y_test: test images and labels.
        num_classes: number of classes C.
        num_query_pool: how many of the first test samples form the query pool.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    num_query_pool: int

    def __post_init__(self) -> None:
        if not 0 <= self.num_query_pool <= len(self.y_test):
            raise DatasetError(
                f"{self.name}: query pool size {self.num_query_pool} is outside 0..{len(self.y_test)} "
                "(the size of the test split)")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape (H, W, C) of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def input_domain(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (low, high) bounds of the scaled pixels (see :func:`input_domain`)."""
        return input_domain(self.name)

    @property
    def x_query(self) -> np.ndarray:
        """Unlabelled query pool: the first ``num_query_pool`` test images."""
        return self.x_test[: self.num_query_pool]

    @property
    def y_query(self) -> np.ndarray:
        """True labels of the query pool (for measuring label accuracy only, never for training)."""
        return self.y_test[: self.num_query_pool]

    @property
    def x_eval(self) -> np.ndarray:
        """Evaluation images: the test split after the query pool."""
        return self.x_test[self.num_query_pool:]

    @property
    def y_eval(self) -> np.ndarray:
        """Evaluation labels."""
        return self.y_test[self.num_query_pool:]


def load_dataset(name: str = "digits", data_dir: str | Path | None = None,
                 num_query_pool: int | None = None, allow_download: bool = False) -> Dataset:
    """Load a dataset by name.

    Args:
        name: one of :data:`DATASET_NAMES` (``digits`` needs no files; the others are read from
            their standard files, see the module docstring).
        data_dir: directory holding the dataset's files (for CIFAR-10 either the
            ``cifar-10-batches-py`` folder or its parent); ignored for digits. When ``None``, MNIST is
            looked for where Keras caches it and Fashion-MNIST also where Debian installs it.
        num_query_pool: size of the query pool at the start of the test split; defaults to
            :data:`DEFAULT_QUERY_POOL` for the dataset.
        allow_download: when the files are absent, fetch them through tf.keras / tensorflow-datasets
            (needs network access). Off by default: capc never downloads behind your back.

    Raises:
        DatasetError: unknown name, or files missing or malformed (the message says what to provide).
    """
    name = _canonical(name)
    if name == "digits":
        x_train, y_train, x_test, y_test = _load_digits()
    elif name == "digits28":
        x_train, y_train, x_test, y_test = _load_digits()
        x_train, x_test = _to_28x28(x_train), _to_28x28(x_test)
    else:
        reader = {"mnist": _load_mnist, "fashion-mnist": _load_fashion_mnist, "svhn": _load_svhn,
                  "cifar10": _load_cifar10}[name]
        try:
            x_train, y_train, x_test, y_test = reader(data_dir)
        except DatasetError as exc:
            if not allow_download:
                raise
            try:
                x_train, y_train, x_test, y_test = _download(name)
            except Exception as dl_exc:  # network, missing package, ...: report both causes
                raise DatasetError(f"{exc}\nDownload also failed: {dl_exc}") from dl_exc
    # the pixels as read, before any standardisation: the domain the models' bounds are derived over
    _check_pixel_domain(name, x_train, x_test)
    if name in CHANNEL_STATS:
        x_train, x_test = _standardise(x_train, name), _standardise(x_test, name)
    pool = DEFAULT_QUERY_POOL[name] if num_query_pool is None else int(num_query_pool)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=10, num_query_pool=pool)


def _standardise(x: np.ndarray, name: str) -> np.ndarray:
    """[0, 1] pixels -> per-channel standardised, as the original's colour pipelines."""
    mean, std = (np.asarray(v, dtype=np.float32) for v in CHANNEL_STATS[name])
    return ((x - mean) / std).astype(np.float32)


#: The input domain every capc dataset declares (and capc.he.bounds.PIXELS mirrors): pixels in
#: [0, 1].  Defined here too so that capc.learning works without the HE stack.
PIXEL_DOMAIN = (0.0, 1.0)


def _check_pixel_domain(name: str, *arrays: np.ndarray) -> None:
    """Every capc dataset declares pixels in [0, 1] (the models' input domain, which sizes the
    answering parties' masks): refuse data that leaves it rather than query with it."""
    lo, hi = PIXEL_DOMAIN
    for split, x in zip(("training", "test"), arrays):
        ok = (x >= lo) & (x <= hi)
        if not np.all(ok):
            i = int(np.argmax(~ok.reshape(-1)))
            raise DatasetError(f"{name} {split} images: value {float(x.reshape(-1)[i])!r} at flat index {i} "
                               f"is outside the declared input domain [{lo:g}, {hi:g}] (pixels scaled to [0, 1])")


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are integers 0..16.
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[..., None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    perm = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(labels))
    images, labels = images[perm], labels[perm]
    n = DIGITS_TRAIN_SIZE
    return images[:n], labels[:n], images[n:], labels[n:]


def _to_28x28(images: np.ndarray) -> np.ndarray:
    """8x8 digits -> 28x28: each pixel becomes a 3x3 block, with a 2-pixel zero border (MNIST-like)."""
    big = np.repeat(np.repeat(images, 3, axis=1), 3, axis=2)
    return np.pad(big, ((0, 0), (2, 2), (2, 2), (0, 0))).astype(np.float32)


def _mnist_help(where: str, label: str = "MNIST") -> str:
    idx = ", ".join(MNIST_IDX_FILES.values())
    if label != "MNIST":
        return (f"{label} files not found in {where}: put the four IDX files ({idx}; '.gz' allowed) in "
                "a directory and pass it as data_dir / --data_dir (Debian: apt-get install "
                "dataset-fashion-mnist), or allow a download.")
    return (f"MNIST files not found in {where}. capc reads MNIST from local files: put either "
            f"'{MNIST_NPZ}' (arrays x_train, y_train, x_test, y_test, as Keras saves it) or the four IDX "
            f"files ({idx}; '.gz' allowed) in that directory and pass it as data_dir / --data_dir. "
            "On a machine with network access, python -c \"import tensorflow as tf; "
            "tf.keras.datasets.mnist.load_data()\" saves ~/.keras/datasets/mnist.npz.")


def _load_mnist(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return _load_mnist_like(data_dir, "MNIST", [Path.home() / ".keras" / "datasets"], "mnist")


def _load_fashion_mnist(data_dir: str | Path | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return _load_mnist_like(data_dir, "Fashion-MNIST",
                            [FASHION_MNIST_SYSTEM_DIR, Path.home() / ".keras" / "datasets" / "fashion-mnist"],
                            "fashion-mnist", npz_ok=False)


def _load_mnist_like(data_dir: str | Path | None, label: str, default_dirs: list[Path], subdir: str,
                     npz_ok: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if data_dir is None:
        candidates = default_dirs
        where = " or ".join(str(d) for d in candidates)
    else:
        base = Path(data_dir).expanduser()
        if not base.is_dir():
            raise DatasetError(f"{label} data directory {str(base)!r} does not exist or is not a directory. "
                               + _mnist_help(str(base), label))
        candidates = [base, base / subdir]
        where = str(base)
    for directory in candidates:
        npz = directory / MNIST_NPZ
        if npz_ok and npz.is_file():
            return _read_mnist_npz(npz)
        idx = {key: _find_idx(directory, stem) for key, stem in MNIST_IDX_FILES.items()}
        if all(p is not None for p in idx.values()):
            arrays = {key: _read_idx(p) for key, p in idx.items()}  # type: ignore[arg-type]
            return _check_mnist(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                                str(directory))
        if any(p is not None for p in idx.values()):
            missing = [MNIST_IDX_FILES[k] for k, p in idx.items() if p is None]
            raise DatasetError(f"incomplete {label} IDX files in {directory}: missing {', '.join(missing)}. "
                               + _mnist_help(str(directory), label))
    raise DatasetError(_mnist_help(where, label))


def _find_idx(directory: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_mnist_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data.files]
            if missing:
                raise DatasetError(f"{path} lacks the arrays {', '.join(missing)} (found: {data.files})")
            arrays = (data["x_train"], data["y_train"], data["x_test"], data["y_test"])
    except DatasetError:
        raise
    except Exception as exc:  # zipfile/pickle/format errors all mean the same thing to the user
        raise DatasetError(f"cannot read {path} as an .npz archive: {exc}") from exc
    return _check_mnist(*arrays, where=str(path))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (LeCun et al.'s MNIST format, big-endian header)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4:
        raise DatasetError(f"{path} is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise DatasetError(f"{path}: header says {dims} ({count} bytes) but the file holds "
                           f"{len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_mnist(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    out = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = np.asarray(x)
        y = np.asarray(y).reshape(-1)
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DatasetError(f"{where}: MNIST {split} images have shape {x.shape}, expected (N, 28, 28)")
        if len(x) != len(y):
            raise DatasetError(f"{where}: {len(x)} {split} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DatasetError(f"{where}: MNIST {split} labels outside 0..9")
        scale = 255.0 if x.dtype == np.uint8 or x.max(initial=0) > 1.0 else 1.0
        out += [(x.astype(np.float32) / scale)[..., None], y.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def _data_dir(data_dir: str | Path | None, label: str) -> Path:
    if data_dir is None:
        raise DatasetError(f"{label} needs --data_dir / data_dir: the directory holding its files")
    base = Path(data_dir).expanduser()
    if not base.is_dir():
        raise DatasetError(f"{label} data directory {str(base)!r} does not exist or is not a directory")
    return base


def _load_svhn(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SVHN cropped digits; private data = train + extra (extra only when its file is present)."""
    base = _data_dir(data_dir, "SVHN")
    missing = [f for key, f in SVHN_FILES.items() if key != "extra" and not (base / f).is_file()]
    if missing:
        raise DatasetError(f"SVHN files missing in {base}: {', '.join(missing)} (the cropped-digits "
                           f"files {', '.join(SVHN_FILES.values())} from ufldl.stanford.edu/housenumbers)")
    x_train, y_train = _read_svhn_mat(base / SVHN_FILES["train"])
    if (base / SVHN_FILES["extra"]).is_file():
        x_extra, y_extra = _read_svhn_mat(base / SVHN_FILES["extra"])
        x_train, y_train = np.concatenate([x_train, x_extra]), np.concatenate([y_train, y_extra])
    x_test, y_test = _read_svhn_mat(base / SVHN_FILES["test"])
    return x_train, y_train, x_test, y_test


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DatasetError(f"cannot read {path} as a MATLAB .mat file: {exc}") from exc
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path} lacks the SVHN fields X and y (found: "
                           f"{sorted(k for k in mat if not k.startswith('__'))})")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, n)")
    if x.shape[3] != len(y):
        raise DatasetError(f"{path}: {x.shape[3]} images but {len(y)} labels")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DatasetError(f"{path}: labels outside 0..10")
    y[y == 10] = 0  # SVHN stores the digit 0 as class 10
    images = np.transpose(x, (3, 0, 1, 2)).astype(np.float32) / 255.0
    return images, y


def _load_cifar10(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    base = _data_dir(data_dir, "CIFAR-10")
    folder = base / CIFAR10_DIR if (base / CIFAR10_DIR).is_dir() else base
    names = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 batches missing in {folder}: {', '.join(missing)} (the python "
                           "version, cifar-10-python.tar.gz, unpacked)")
    train = [_read_cifar_batch(folder / n) for n in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_TEST_BATCH)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            # The official batches are pickles; only read files you got from a source you trust.
            batch = pickle.load(fh, encoding="bytes")
    except Exception as exc:
        raise DatasetError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path} is not a CIFAR-10 batch (needs the keys b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DatasetError(f"{path}: data has shape {data.shape} for {len(labels)} labels, "
                           "expected (n, 3072)")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels outside 0..9")
    # Rows are 1024 red, then green, then blue bytes (row-major 32x32 planes) -> NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    return images, labels


def _download(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fetch a dataset online (only with ``allow_download``); returns pixels/255 like the readers."""
    if name == "svhn":
        import tensorflow_datasets as tfds

        parts = {split: tfds.as_numpy(tfds.load("svhn_cropped", split=split, batch_size=-1))
                 for split in ("train", "extra", "test")}
        x_train = np.concatenate([parts["train"]["image"], parts["extra"]["image"]])
        y_train = np.concatenate([parts["train"]["label"], parts["extra"]["label"]])
        return (x_train.astype(np.float32) / 255.0, y_train.astype(np.int64),
                parts["test"]["image"].astype(np.float32) / 255.0, parts["test"]["label"].astype(np.int64))
    import tensorflow as tf

    module = {"mnist": tf.keras.datasets.mnist, "fashion-mnist": tf.keras.datasets.fashion_mnist,
              "cifar10": tf.keras.datasets.cifar10}[name]
    (x_train, y_train), (x_test, y_test) = module.load_data()

    def scale(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32) / 255.0
        return x[..., None] if x.ndim == 3 else x

    return scale(x_train), y_train.reshape(-1).astype(np.int64), scale(x_test), y_test.reshape(-1).astype(np.int64)
