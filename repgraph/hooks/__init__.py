"""Capture: layer selection, ActivationRecorder, capture_activations, the Activations store."""
from .activations import Activations
from .capture import capture_activations
from .layers import block_stack, is_residual_block, list_layers, select_layers
from .recorder import ActivationRecorder

__all__ = ["Activations", "ActivationRecorder", "capture_activations", "list_layers",
           "select_layers", "is_residual_block", "block_stack"]
