"""Trained quantization: 1-D k-means weight sharing and centroid fine-tuning."""

from .kmeans import INITS, init_centroids, kmeans_1d, wcss
from .sharing import codebook_parameters, is_shared, share_layer, shared_state, unshare

__all__ = ["INITS", "codebook_parameters", "init_centroids", "is_shared", "kmeans_1d", "share_layer",
           "shared_state", "unshare", "wcss"]
