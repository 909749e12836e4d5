import numpy as np
import pytest
from sklearn.cluster import KMeans

from deepcompress.quantize import INITS, init_centroids, kmeans_1d, wcss


def test_linear_init_is_evenly_spaced_over_min_max():
    v = np.random.default_rng(0).normal(size=1000)
    c = init_centroids(v, 8, "linear")
    assert c[0] == v.min() and c[-1] == v.max()
    np.testing.assert_allclose(np.diff(c), (v.max() - v.min()) / 7)


def test_density_init_follows_the_cdf():
    v = np.random.default_rng(0).normal(size=10001)
    c = init_centroids(v, 4, "density")
    np.testing.assert_allclose(c, np.quantile(v, [0.125, 0.375, 0.625, 0.875]))


@pytest.mark.parametrize("init", INITS)
def test_results_are_deterministic_per_seed(init):
    v = np.random.default_rng(1).laplace(size=5000)
    a = kmeans_1d(v, 16, init, seed=3)
    b = kmeans_1d(v, 16, init, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_random_inits_depend_on_seed():
    v = np.random.default_rng(1).laplace(size=5000)
    assert not np.array_equal(init_centroids(v, 8, "random", 0), init_centroids(v, 8, "random", 1))


@pytest.mark.parametrize("init", INITS)
def test_labels_are_nearest_centroid_and_clusters_non_empty(init):
    v = np.random.default_rng(2).normal(size=3000)
    c, labels = kmeans_1d(v, 32, init, seed=0)
    assert np.all(np.diff(c) > 0)
    assert np.array_equal(np.unique(labels), np.arange(c.size))
    nearest = np.abs(v[:, None] - c[None, :]).argmin(1)
    np.testing.assert_array_equal(labels, nearest)
    # each centroid is the mean of its cluster (Lloyd fixed point)
    for j in range(c.size):
        assert c[j] == pytest.approx(v[labels == j].mean(), abs=1e-9)


def test_matches_scikit_learn_from_the_same_start():
    v = np.random.default_rng(3).normal(size=4000)
    init = init_centroids(v, 8, "linear")
    c, labels = kmeans_1d(v, 8, centroids=init)
    km = KMeans(8, init=init.reshape(-1, 1), n_init=1, tol=0, max_iter=300).fit(v.reshape(-1, 1))
    assert wcss(v, c, labels) <= km.inertia_ * (1 + 1e-9)


def test_fewer_levels_than_clusters_and_empty_input():
    c, labels = kmeans_1d(np.array([1.0, 1.0, 2.0]), 8)
    np.testing.assert_array_equal(c, [1.0, 2.0])
    np.testing.assert_array_equal(labels, [0, 0, 1])
    c, labels = kmeans_1d(np.array([]), 4)
    assert c.size == 0 and labels.size == 0
    with pytest.raises(ValueError, match="unknown centroid init"):
        init_centroids(np.ones(3), 2, "bogus")
