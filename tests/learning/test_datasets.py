"""Datasets: digits split and scaling, MNIST from .npz and IDX files, clear errors when absent."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from capc.errors import CapcError
from capc.learning.datasets import DatasetError, load_dataset


def test_digits_shapes_ranges_and_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1200, 8, 8, 1) and ds.x_test.shape == (597, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert ds.x_train.max() == 1.0  # scaled by the true maximum 16, not by 255
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert ds.num_query_pool == 300
    assert len(ds.x_query) == 300 and len(ds.x_eval) == 297
    np.testing.assert_array_equal(np.concatenate([ds.y_query, ds.y_eval]), ds.y_test)
    assert ds.input_shape == (8, 8, 1)


def test_digits_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits", num_query_pool=100)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert len(b.x_query) == 100 and len(b.x_eval) == 497


def test_unknown_dataset_and_bad_pool():
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar1000")
    with pytest.raises(DatasetError, match="query pool"):
        load_dataset("digits", num_query_pool=10_000)


def test_mnist_missing_names_files_and_directory(tmp_path):
    with pytest.raises(CapcError) as info:
        load_dataset("mnist", tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "mnist.npz" in msg and "train-images-idx3-ubyte" in msg
    assert "tf.keras.datasets.mnist.load_data()" in msg
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nowhere")


def _fake_mnist(n_train=30, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))


def test_mnist_from_npz(tmp_path):
    xtr, ytr, xte, yte = _fake_mnist()
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ds = load_dataset("mnist", tmp_path, num_query_pool=5)
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (20, 28, 28, 1)
    np.testing.assert_allclose(ds.x_train[..., 0], xtr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert len(ds.x_eval) == 15


def _write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx(tmp_path, compress):
    xtr, ytr, xte, yte = _fake_mnist()
    for name, arr in (("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)):
        _write_idx(tmp_path / name, arr, compress)
    ds = load_dataset("mnist", tmp_path, num_query_pool=10)
    np.testing.assert_array_equal(ds.y_train, ytr)
    np.testing.assert_allclose(ds.x_test[..., 0], xte / 255.0, rtol=1e-6)


def test_mnist_incomplete_and_malformed_idx(tmp_path):
    xtr, ytr, _, _ = _fake_mnist()
    _write_idx(tmp_path / "train-images-idx3-ubyte", xtr, False)
    with pytest.raises(DatasetError, match="missing .*t10k-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", ytr, False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05")  # truncated
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(DatasetError):
        load_dataset("mnist", tmp_path)


def test_mnist_npz_with_wrong_arrays(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28)))
    with pytest.raises(DatasetError, match="lacks the arrays"):
        load_dataset("mnist", tmp_path)
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 5, 5)), y_train=np.zeros(2), x_test=np.zeros((2, 5, 5)),
             y_test=np.zeros(2))
    with pytest.raises(DatasetError, match="expected \\(N, 28, 28\\)"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "mnist.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("mnist", tmp_path)


def test_mnist_outside_the_pixel_domain_is_refused(tmp_path):
    """Float images beyond 255 (or negative) would leave the models' declared input domain
    [0, 1], which the answering parties' mask bound relies on: loading them fails, naming it."""
    xtr, ytr, xte, yte = _fake_mnist()
    bad = xte.astype(np.float64)
    bad[3, 4, 5] = 1000.0
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=bad, y_test=yte)
    with pytest.raises(DatasetError, match=r"test images: value 3\.92.* outside the declared input domain \[0, 1\]"):
        load_dataset("mnist", tmp_path)
    neg = xtr.astype(np.float64) - 1.0
    np.savez(tmp_path / "mnist.npz", x_train=neg, y_train=ytr, x_test=xte, y_test=yte)
    with pytest.raises(DatasetError, match="training images: value -"):
        load_dataset("mnist", tmp_path)
