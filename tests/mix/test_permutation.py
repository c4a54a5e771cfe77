import numpy as np
import pytest

from domainlm.mix.permutation import Permutation


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097])
def test_is_a_bijection(n):
    values = Permutation(n, seed=0)(np.arange(n))
    assert sorted(values.tolist()) == list(range(n))


def test_seeded_and_reproducible():
    first = Permutation(1000, seed=1)(np.arange(1000))
    assert np.array_equal(first, Permutation(1000, seed=1)(np.arange(1000)))
    assert not np.array_equal(first, Permutation(1000, seed=2)(np.arange(1000)))
    assert not np.array_equal(first, np.arange(1000))  # actually shuffles


def test_blockwise_equals_whole():
    perm = Permutation(10_000, seed="x")
    whole = perm(np.arange(10_000))
    blocks = np.concatenate([perm(np.arange(s, min(s + 777, 10_000))) for s in range(0, 10_000, 777)])
    assert np.array_equal(whole, blocks)


def test_out_of_range():
    with pytest.raises(IndexError):
        Permutation(5, 0)(np.array([5]))
