"""Datasets: MNIST IDX folders, scikit-learn's bundled digits, image folders and label CSVs."""

from .digits import load_digits_28
from .images import (
    BadImageWarning,
    ImageData,
    ImageListDataset,
    eval_transform,
    is_image_folder,
    load_eval_folder,
    load_image_data,
    read_split_file,
    stratified_split,
    train_transform,
    write_split_file,
)
from .mnist import DataError, is_mnist_folder, load_mnist, load_mnist_arrays, read_idx

__all__ = [
    "BadImageWarning", "DataError", "ImageData", "ImageListDataset", "eval_transform", "is_image_folder",
    "is_mnist_folder", "load_digits_28", "load_eval_folder", "load_image_data", "load_mnist",
    "load_mnist_arrays", "read_idx", "read_split_file", "stratified_split", "train_transform",
    "write_split_file",
]
