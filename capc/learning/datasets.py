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
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capc.learning.errors import DatasetError

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES = ("digits", "digits28", "mnist")

#: Default size of the query pool (first part of the test split) per dataset.
DEFAULT_QUERY_POOL = {"digits": 300, "digits28": 300, "mnist": 9000}

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
        name: dataset name (``"digits"`` or ``"mnist"``).
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
                 num_query_pool: int | None = None) -> Dataset:
    """Load a dataset by name.

    Args:
        name: ``"digits"`` (scikit-learn, always available) or ``"mnist"`` (local files only).
        data_dir: directory holding the MNIST files; ignored for digits. When ``None``, MNIST is
            looked for where Keras caches it (``~/.keras/datasets/mnist.npz``).
        num_query_pool: size of the query pool at the start of the test split; defaults to
            :data:`DEFAULT_QUERY_POOL` for the dataset.

    Raises:
        DatasetError: unknown name, or MNIST files missing or malformed.
    """
    if not isinstance(name, str) or name.lower() not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    name = name.lower()
    if name == "digits":
        x_train, y_train, x_test, y_test = _load_digits()
    elif name == "digits28":
        x_train, y_train, x_test, y_test = _load_digits()
        x_train, x_test = _to_28x28(x_train), _to_28x28(x_test)
    else:
        x_train, y_train, x_test, y_test = _load_mnist(data_dir)
    _check_pixel_domain(name, x_train, x_test)
    pool = DEFAULT_QUERY_POOL[name] if num_query_pool is None else int(num_query_pool)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=10, num_query_pool=pool)


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


def _mnist_help(where: str) -> str:
    idx = ", ".join(MNIST_IDX_FILES.values())
    return (f"MNIST files not found in {where}. capc reads MNIST from local files only: put either "
            f"'{MNIST_NPZ}' (arrays x_train, y_train, x_test, y_test, as Keras saves it) or the four IDX "
            f"files ({idx}; '.gz' allowed) in that directory and pass it as data_dir / --data_dir. "
            "On a machine with network access, python -c \"import tensorflow as tf; "
            "tf.keras.datasets.mnist.load_data()\" saves ~/.keras/datasets/mnist.npz.")


def _load_mnist(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if data_dir is None:
        candidates = [Path.home() / ".keras" / "datasets"]
        where = str(candidates[0])
    else:
        base = Path(data_dir).expanduser()
        if not base.is_dir():
            raise DatasetError(f"MNIST data directory {str(base)!r} does not exist or is not a directory. "
                               + _mnist_help(str(base)))
        candidates = [base, base / "mnist"]
        where = str(base)
    for directory in candidates:
        npz = directory / MNIST_NPZ
        if npz.is_file():
            return _read_mnist_npz(npz)
        idx = {key: _find_idx(directory, stem) for key, stem in MNIST_IDX_FILES.items()}
        if all(p is not None for p in idx.values()):
            arrays = {key: _read_idx(p) for key, p in idx.items()}  # type: ignore[arg-type]
            return _check_mnist(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                                str(directory))
        if any(p is not None for p in idx.values()):
            missing = [MNIST_IDX_FILES[k] for k, p in idx.items() if p is None]
            raise DatasetError(f"incomplete MNIST IDX files in {directory}: missing {', '.join(missing)}. "
                               + _mnist_help(str(directory)))
    raise DatasetError(_mnist_help(where))


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
