"""Data sets: sklearn digits (embedded default), CIFAR-10 from a local folder, synthetic clusters,
byte-level text from the Python standard library's sources."""
from .cifar10 import DatasetNotFoundError, cifar10
from .digits import digits
from .synthetic import synthetic_clusters
from .tensor_dataset import ArrayDataset
from .text import byte_corpus, token_windows

__all__ = ["ArrayDataset", "DatasetNotFoundError", "cifar10", "digits", "synthetic_clusters", "byte_corpus",
           "token_windows"]
