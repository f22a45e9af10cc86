"""SVHN (.mat), CIFAR-10 (pickle batches) and Fashion-MNIST (IDX) readers on files in the real formats.

The SVHN/CIFAR files are tiny but written exactly as the official releases are (field names, shapes,
byte order), so the readers' layout handling is checked without a download.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.io

from capc.learning.datasets import (CHANNEL_STATS, FASHION_MNIST_SYSTEM_DIR, DatasetError, input_domain,
                                    load_dataset)


def _write_svhn(path, n, seed, digit_of_first=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)  # 1..10, 10 = digit zero
    if digit_of_first is not None:
        y[0, 0] = digit_of_first
    scipy.io.savemat(str(path), {"X": x, "y": y})
    return x, y


def test_svhn_mat_layout_labels_extra_and_split(tmp_path):
    xtr, ytr = _write_svhn(tmp_path / "train_32x32.mat", 5, 1, digit_of_first=10)
    xex, yex = _write_svhn(tmp_path / "extra_32x32.mat", 3, 2)
    xte, yte = _write_svhn(tmp_path / "test_32x32.mat", 6, 3)
    ds = load_dataset("svhn", tmp_path, num_query_pool=4)
    assert ds.x_train.shape == (8, 32, 32, 3) and ds.x_test.shape == (6, 32, 32, 3)
    assert ds.y_train[0] == 0  # stored 10 -> digit 0
    assert set(np.unique(ds.y_train)) <= set(range(10))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([ytr, yex]).reshape(-1) % 10)
    # Image i of the file is X[:, :, :, i]; undo the standardisation to compare pixels exactly.
    mean, std = (np.asarray(v, dtype=np.float32) for v in CHANNEL_STATS["svhn"])
    np.testing.assert_allclose((ds.x_test[2] * std + mean) * 255.0, xte[:, :, :, 2], atol=1e-3)
    np.testing.assert_allclose((ds.x_train[6] * std + mean) * 255.0, xex[:, :, :, 1], atol=1e-3)
    assert len(ds.x_query) == 4 and len(ds.x_eval) == 2
    low, high = ds.input_domain
    assert (ds.x_train >= low - 1e-5).all() and (ds.x_train <= high + 1e-5).all()
    assert load_dataset("svhn", tmp_path, num_query_pool=0).num_query_pool == 0


def test_svhn_without_extra_and_errors(tmp_path):
    _write_svhn(tmp_path / "train_32x32.mat", 4, 1)
    with pytest.raises(DatasetError, match="test_32x32.mat"):
        load_dataset("svhn", tmp_path)
    _write_svhn(tmp_path / "test_32x32.mat", 2, 2)
    assert len(load_dataset("svhn", tmp_path, num_query_pool=1).y_train) == 4
    scipy.io.savemat(str(tmp_path / "test_32x32.mat"), {"X": np.zeros((28, 28, 1, 2), np.uint8),
                                                        "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(DatasetError, match=r"expected \(32, 32, 3, n\)"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(DatasetError, match="data_dir"):
        load_dataset("svhn")


def _write_cifar(folder, n_per_batch, seed):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels,
                         b"filenames": [b"x.png"] * n_per_batch}, fh)
        written[name] = (data, labels)
    return written


def test_cifar10_pickles_channel_major_layout(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py", 3, 0)
    ds = load_dataset("cifar10", tmp_path, num_query_pool=2)
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    data, labels = written["data_batch_2"]
    assert list(ds.y_train[3:6]) == labels
    mean, std = (np.asarray(v, dtype=np.float32) for v in CHANNEL_STATS["cifar10"])
    pixels = (ds.x_train[4] * std + mean) * 255.0
    row = data[1]
    # Red plane first, then green, then blue; each plane row-major: pixel (r, c) is at r*32 + c.
    assert abs(pixels[0, 1, 0] - row[1]) < 1e-3
    assert abs(pixels[2, 5, 1] - row[1024 + 2 * 32 + 5]) < 1e-3
    assert abs(pixels[31, 31, 2] - row[3071]) < 1e-3
    assert len(ds.x_query) == 2 and len(ds.x_eval) == 1
    # The folder itself is accepted too.
    assert len(load_dataset("cifar-10", tmp_path / "cifar-10-batches-py", num_query_pool=0).y_train) == 15


def test_cifar10_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, 2, 1)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="cannot read CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)


def test_input_domains():
    low, high = input_domain("mnist")
    assert low.tolist() == [0.0] and high.tolist() == [1.0]
    low, high = input_domain("cifar10")
    mean, std = CHANNEL_STATS["cifar10"]
    np.testing.assert_allclose(low, -np.asarray(mean) / std)
    np.testing.assert_allclose(high, (1 - np.asarray(mean)) / std)
    with pytest.raises(DatasetError, match="unknown dataset"):
        input_domain("imagenet")


def test_fashion_mnist_idx_from_data_dir(tmp_path):
    import gzip
    import struct

    def idx(path, arr):
        header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
        with gzip.open(path, "wb") as fh:
            fh.write(header + arr.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)))
    idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 7))
    idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 4))
    ds = load_dataset("fashion-mnist", tmp_path, num_query_pool=3)
    assert ds.x_train.shape == (7, 28, 28, 1) and ds.x_train.max() <= 1.0
    assert len(ds.x_eval) == 1


@pytest.mark.skipif(not (FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed "
                           "(scripts/setup.sh installs it; apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_files():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10  # the published set is balanced
    assert len(ds.x_query) == 9000 and len(ds.x_eval) == 1000
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0
