"""The trained digits checkpoint shipped as package data (made by ``repgraph train``)."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import torch

from . import get_model

SHIPPED_CHECKPOINT = Path(str(files("repgraph") / "data" / "resnet20_digits.pt"))


def load_checkpoint(path, model_name: str = "resnet20", size: int = 16, seed: int = 0, num_classes: int = 10):
    """The model stored at ``path`` by ``repgraph train``, in eval mode, or None when the file is
    absent or was made for another model, input size or seed."""
    path = Path(path)
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if (ckpt.get("model"), ckpt.get("size"), ckpt.get("seed")) != (model_name, size, seed):
        return None
    model = get_model(model_name, num_classes=num_classes, in_channels=1)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
