"""Datasets: MNIST IDX folders and scikit-learn's bundled digits."""

from .digits import load_digits_28
from .mnist import DataError, is_mnist_folder, load_mnist, load_mnist_arrays, read_idx

__all__ = ["DataError", "is_mnist_folder", "load_digits_28", "load_mnist", "load_mnist_arrays", "read_idx"]
