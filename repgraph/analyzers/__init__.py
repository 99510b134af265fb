"""Analyzers: pure functions on arrays (numpy or torch, any device)."""
from .communities import communities
from .modularity import modularity, modularity_curve

__all__ = ["communities", "modularity", "modularity_curve"]
