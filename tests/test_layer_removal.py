import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from repgraph import redundant_layers, removable_layers, remove_layers
from repgraph.hooks import block_stack
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


class _Attention(nn.Module):
    def __init__(self, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.proj = nn.Linear(4, 4)

    def forward(self, x, cache):
        cache[self.layer_idx] = x  # a KV-cache stand-in indexed by the layer position
        return self.proj(x)


class _Layer(nn.Module):
    def __init__(self, layer_idx):
        super().__init__()
        self.attn = _Attention(layer_idx)
        self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(6))  # nested: never the stack

    def forward(self, x, cache):
        return x + self.attn(x, cache)


class _Config:
    def __init__(self, n):
        self.num_hidden_layers = n

    @property
    def layer_types(self):  # computed, like Jamba's: alternates with the position
        return ["full" if i % 2 == 0 else "linear" for i in range(self.num_hidden_layers)]


class _Decoder(nn.Module):
    """A plain-PyTorch stack of 4 layers that pass a tuple-like cache: Identity cannot stand in."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config
        self.embed = nn.Linear(4, 4)
        self.layers = nn.ModuleList(_Layer(i) for i in range(4))
        self.heads = nn.ModuleList([nn.Linear(4, 2), nn.Linear(4, 3)])

    def forward(self, x):
        cache = [None] * len(self.layers)
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x, cache)
        return x, cache


def test_block_stack_finds_the_outer_same_class_list():
    assert block_stack(_Decoder()) == ("layers", [f"layers.{i}" for i in range(4)])
    assert block_stack(resnet20()) is None


def test_blocks_of_a_plain_stack_are_deleted_and_renumbered():
    torch.manual_seed(0)
    model = _Decoder()
    assert removable_layers(model) == [f"layers.{i}" for i in range(4)]
    pruned = remove_layers(model, ["layers.0", "layers.2"])
    assert len(pruned.layers) == 2 and [l.attn.layer_idx for l in pruned.layers] == [0, 1]
    assert torch.equal(pruned.layers[1].attn.proj.weight, model.layers[3].attn.proj.weight)
    x = torch.randn(3, 4)
    out, cache = pruned(x)
    # by hand: embed, then original layers 1 and 3
    h = model.embed(x)
    h = h + model.layers[1].attn.proj(h)
    torch.testing.assert_close(out, h + model.layers[3].attn.proj(h))
    assert len(cache) == 2 and all(c is not None for c in cache)
    assert [l.attn.layer_idx for l in model.layers] == [0, 1, 2, 3]  # original untouched


def test_stack_config_is_checked_and_computed_lists_must_follow():
    mismatch = _Decoder(_Config(4))
    mismatch.config.num_hidden_layers = 12  # shared layers (ALBERT-style): no one-to-one renumbering
    with pytest.raises(ValueError, match="num_hidden_layers is 12 but 'layers' holds 4 blocks"):
        remove_layers(mismatch, ["layers.1"])
    # layer_types alternates with the position: removing two neighbours keeps the pattern ...
    pruned = remove_layers(_Decoder(_Config(4)), ["layers.1", "layers.2"])
    assert pruned.config.num_hidden_layers == 2 and pruned.config.layer_types == ["full", "linear"]
    # ... removing one breaks it, and a computed list cannot be rewritten
    with pytest.raises(ValueError, match="computed from other settings"):
        remove_layers(_Decoder(_Config(4)), ["layers.0"])
