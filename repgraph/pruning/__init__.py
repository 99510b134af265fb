"""Pruning: redundant layers and block removal; training and evaluation."""
from .layer_removal import removable_layers, remove_layers
from .redundant import redundant_layers
from .training import evaluate, train

__all__ = ["evaluate", "redundant_layers", "removable_layers", "remove_layers", "train"]
