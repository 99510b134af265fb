"""Builders: similarity (Gram) matrices, kNN sample graphs, graph conversions."""
from .convert import to_igraph, to_networkx
from .knn import knn_graph
from .similarity import similarity_matrix

__all__ = ["knn_graph", "similarity_matrix", "to_igraph", "to_networkx"]
