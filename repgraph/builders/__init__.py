"""Builders: similarity (Gram) matrices, kNN sample graphs, the filter graph, graph conversions."""
from .convert import to_igraph, to_networkx
from .filter_graph import filter_similarity, similarity_graph
from .knn import knn_graph
from .similarity import similarity_matrix

__all__ = ["filter_similarity", "knn_graph", "similarity_graph", "similarity_matrix", "to_igraph", "to_networkx"]
