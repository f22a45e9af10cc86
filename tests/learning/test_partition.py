"""Partitions: disjoint, exhaustive, sized as in the original CaPC learning code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capc.learning.partition import PartitionError, check_partition, iid_partition, weak_class_partition


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), k=st.integers(1, 40))
def test_iid_invariants(n, k):
    if n < k:
        with pytest.raises(PartitionError):
            iid_partition(n, k)
        return
    parts = iid_partition(n, k)
    assert len(parts) == k
    check_partition(parts, n)
    size = n // k
    assert all(len(p) == size for p in parts[:-1])
    assert len(parts[-1]) == size + n % k
    for p in parts:  # contiguous slices in order
        np.testing.assert_array_equal(p, np.arange(p[0], p[0] + len(p)))
    assert parts[0][0] == 0


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_weak_class_invariants(data):
    num_classes = data.draw(st.integers(2, 6))
    k = data.draw(st.integers(2, 8))
    q = data.draw(st.integers(0, k - 1))
    n = data.draw(st.integers(k * num_classes, 400))
    labels = np.array(data.draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n)))
    weak = data.draw(st.sets(st.integers(0, num_classes - 1), max_size=num_classes))
    ratio = data.draw(st.floats(0.0, 1.0))
    parts = weak_class_partition(labels, k, q, sorted(weak), ratio, num_classes)
    check_partition(parts, n)
    for c in range(num_classes):
        size_c = int((labels == c).sum())
        counts = [int((labels[p] == c).sum()) for p in parts]
        if c in weak:
            size_weak = int(ratio * (size_c / k))
            assert counts[:q] == [size_weak] * q
            strong = (size_c - size_weak * q) // (k - q)
            assert counts[q:-1] == [strong] * (k - q - 1)
        else:
            assert counts[:-1] == [size_c // k] * (k - 1)


def test_weak_classes_on_digits_sizes():
    from capc.learning.datasets import load_dataset

    y = load_dataset("digits").y_train
    parts = weak_class_partition(y, 4, 1, [1, 2], 0.1)
    check_partition(parts, len(y))
    for c in (1, 2):
        n_c = int((y == c).sum())
        assert int((y[parts[0]] == c).sum()) == int(0.1 * n_c / 4)
        assert all(int((y[p] == c).sum()) >= n_c // 4 for p in parts[1:])
    # the querying party keeps its fair share of the other classes
    assert int((y[parts[0]] == 3).sum()) == int((y == 3).sum()) // 4


def test_bad_arguments():
    y = np.arange(20) % 4
    with pytest.raises(PartitionError, match="num_querying_parties"):
        weak_class_partition(y, 3, 3, [1], 0.1)
    with pytest.raises(PartitionError, match="weak classes \\[7\\]"):
        weak_class_partition(y, 3, 1, [7], 0.1)
    with pytest.raises(PartitionError, match="weak_class_ratio"):
        weak_class_partition(y, 3, 1, [1], 1.5)
    with pytest.raises(PartitionError, match="positive integer"):
        iid_partition(10, 0)
    with pytest.raises(PartitionError, match="1-D integer"):
        weak_class_partition(np.zeros(10), 2, 1, [0], 0.1)


def test_check_partition_detects_overlap_and_gaps():
    with pytest.raises(PartitionError, match="not disjoint"):
        check_partition([np.array([0, 1]), np.array([1, 2])], 3)
    with pytest.raises(PartitionError, match="not exhaustive"):
        check_partition([np.array([0]), np.array([2])], 3)
    with pytest.raises(PartitionError, match="outside"):
        check_partition([np.array([0, 5])], 3)
