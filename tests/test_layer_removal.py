import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from repgraph import redundant_layers, removable_layers, remove_layers
from repgraph.models import resnet20


def _curve(values):
    return pd.DataFrame({"layer": [f"l{i}" for i in range(len(values))], "depth": range(len(values)),
                         "modularity": values})


def test_redundant_layers_on_hand_made_curves():
    flat = redundant_layers(_curve([0.1, 0.3, 0.305, 0.5, 0.45, 0.6]), tol=0.01)
    assert flat["redundant"].tolist() == [False, False, True, False, True, False]
    np.testing.assert_allclose(flat["delta_q"].iloc[1:], [0.2, 0.005, 0.195, -0.05, 0.15])
    rising = redundant_layers(_curve([0.1, 0.2, 0.3, 0.4]), tol=0.01)
    assert not rising["redundant"].any()
    limited = redundant_layers(_curve([0.1, 0.1, 0.1]), tol=0.0, removable=["l2"])
    assert limited["redundant"].tolist() == [False, False, True]
    # a budget keeps the smallest steps: -0.05 (l4) then 0.005 (l2)
    budget = redundant_layers(_curve([0.1, 0.3, 0.305, 0.5, 0.45, 0.6]), tol=float("inf"), max_layers=2)
    assert budget["redundant"].tolist() == [False, False, True, False, True, False]
    one = redundant_layers(_curve([0.1, 0.3, 0.305, 0.5, 0.45, 0.6]), tol=float("inf"), max_layers=1)
    assert one.loc[one["redundant"], "layer"].tolist() == ["l4"]
    with pytest.raises(ValueError, match="modularity"):
        redundant_layers(pd.DataFrame({"layer": ["a"]}))


def test_removable_layers_of_resnet20():
    x = torch.zeros(1, 3, 32, 32)
    assert removable_layers(resnet20(), x) == ["layer1.0", "layer1.1", "layer1.2", "layer2.1",
                                               "layer2.2", "layer3.1", "layer3.2"]


def test_remove_layers_keeps_shapes_and_drops_exactly_the_blocks_params():
    torch.manual_seed(0)
    model = resnet20().eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x).detach()
    n_before = sum(p.numel() for p in model.parameters())
    removed = remove_layers(model, ["layer1.1", "layer3.2"], example_input=x)
    block_params = sum(p.numel() for n in ("layer1.1", "layer3.2") for p in model.get_submodule(n).parameters())
    assert sum(p.numel() for p in removed.parameters()) == n_before - block_params
    assert isinstance(removed.layer3[2], nn.Identity)
    assert removed(x).shape == before.shape
    torch.testing.assert_close(model(x), before)  # the original is untouched
    assert isinstance(model.layer3[2], nn.Module) and not isinstance(model.layer3[2], nn.Identity)
    # the structural check (no example input) agrees
    assert isinstance(remove_layers(model, "layer2.2").layer2[2], nn.Identity)
    with pytest.raises(ValueError, match="cannot be removed"):
        remove_layers(model, ["layer2.0"])
    with pytest.raises(ValueError, match="Unknown layer"):
        remove_layers(model, ["layer9.0"])
