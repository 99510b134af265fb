"""Data sets: sklearn digits (embedded default), CIFAR-10 from a local folder, synthetic clusters."""
from .cifar10 import DatasetNotFoundError, cifar10
from .digits import digits
from .synthetic import synthetic_clusters
from .tensor_dataset import ArrayDataset

__all__ = ["ArrayDataset", "DatasetNotFoundError", "cifar10", "digits", "synthetic_clusters"]
