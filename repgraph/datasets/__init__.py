"""Data sets: sklearn digits (embedded default), CIFAR-10 from a local folder, MNIST-1D (generated
by the optional ``mnist1d`` package), synthetic clusters, byte-level text from the Python standard
library's sources."""
from .cifar10 import DatasetNotFoundError, cifar10
from .digits import digits
from .mnist1d import mnist1d
from .synthetic import synthetic_clusters
from .tensor_dataset import ArrayDataset
from .text import byte_corpus, token_windows

__all__ = ["ArrayDataset", "DatasetNotFoundError", "byte_corpus", "cifar10", "digits", "mnist1d", "synthetic_clusters",
           "token_windows"]
