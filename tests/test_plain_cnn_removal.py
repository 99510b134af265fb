"""Removing conv groups (conv, BN, activation) of plain VGG-style stacks, the reasons a layer cannot
go, the "blocks" preset of a plain stack and the chaining check of chosen layers (issue 23, A1)."""
import copy
from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

from repgraph import redundant_layers, removable_layers, remove_layers
from repgraph.hooks import select_layers
from repgraph.hooks.chaining import check_chained, layer_chain
from repgraph.hooks.conv_groups import conv_groups, conv_shape_change
from repgraph.models import resnet20, small_cnn, vgg11


def _group(c_in, c_out, stride=1, padding=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def _nested():
    """features: 3->8, 8->8, 8->8 stride 2, 8->16, 16->16, 16->16 with kernel 3 and no padding."""
    torch.manual_seed(0)
    groups = [_group(3, 8), _group(8, 8), _group(8, 8, stride=2), _group(8, 16), _group(16, 16),
              _group(16, 16, padding=0)]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    return _randomise_bn(nn.Sequential(OrderedDict(features=nn.Sequential(*groups), head=head)))


X = torch.randn(4, 3, 8, 8)


def test_removable_groups_of_a_nested_plain_stack_and_why_the_others_cannot_go():
    model = _nested()
    # by hand: 8->8 stride 1 padding 1 (features.1) and 16->16 stride 1 padding 1 (features.4) keep the shape
    assert removable_layers(model, X[:1]) == ["features.1", "features.4"]
    assert removable_layers(model) == ["features.1", "features.4"]  # read from the conv settings
    table = removable_layers(model, X[:1], explain=True).set_index("layer")
    assert set(table.index) == {n for n, _ in model.named_modules() if n}
    assert table.loc["features.0", "reason"] == "changes channels 3->8"
    assert table.loc["features.2", "reason"] == "changes the spatial size (stride 2)"
    assert table.loc["features.3", "reason"] == "changes channels 8->16"
    assert table.loc["features.5", "reason"] == "changes the spatial size (kernel 3 with padding 0)"
    assert table.loc["features.1.2", "reason"].startswith("part of the conv group 'features.1'")
    assert table.loc["head.2", "reason"] == "not a conv group (Linear)"
    assert table.loc["features.1", "removable"] and not table.loc["features.2", "removable"]
    assert table["removable"].sum() == 2


def test_a_removed_nested_group_is_the_network_built_without_it():
    model = _nested()
    pruned = remove_layers(model, ["features.1", "features.4"], example_input=X[:1])
    f = copy.deepcopy(model.features)
    by_hand = nn.Sequential(f[0], f[2], f[3], f[5], copy.deepcopy(model.head)).eval()
    torch.testing.assert_close(pruned(X), by_hand(X))
    assert isinstance(pruned.features[1], nn.Identity) and isinstance(pruned.features[4], nn.Identity)
    assert not isinstance(model.features[1], nn.Identity)  # the original is untouched


def test_a_removed_flat_vgg_group_is_the_network_built_without_it():
    torch.manual_seed(1)
    model = _randomise_bn(vgg11(num_classes=4))
    x = torch.randn(2, 3, 32, 32)
    # VGG-11's flat features: conv groups start at 0, 4, 8, 11, 15, 18, 22, 25; the 256->256 (11),
    # and the 512->512 convs (18, 22, 25) keep the shape
    assert removable_layers(model, x[:1]) == ["features.11", "features.18", "features.22", "features.25"]
    pruned = remove_layers(model, ["features.22"], example_input=x[:1])
    kept = [copy.deepcopy(m) for i, m in enumerate(model.features) if i not in (22, 23, 24)]
    by_hand = nn.Sequential(*kept, copy.deepcopy(model.avgpool), nn.Flatten(), copy.deepcopy(model.classifier)).eval()
    torch.testing.assert_close(pruned(x), by_hand(x))
    removed = sum(p.numel() for i in (22, 23, 24) for p in model.features[i].parameters())
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in model.parameters()) - removed
    table = removable_layers(model, x[:1], explain=True).set_index("layer")
    assert table.loc["features.4", "reason"] == "changes channels 64->128"
    assert table.loc["features.3", "reason"] == "not a conv group (MaxPool2d)"


def test_parts_of_groups_and_shape_changing_groups_are_refused_with_the_reason():
    model = _nested()
    with pytest.raises(ValueError, match=r"'features.1.2' cannot be removed: part of the conv group 'features.1'"):
        remove_layers(model, ["features.1.2"], example_input=X[:1])
    with pytest.raises(ValueError, match=r"'features.2' cannot be removed: changes the spatial size \(stride 2\)"):
        remove_layers(model, "features.2")
    with pytest.raises(ValueError, match="Unknown layer"):
        remove_layers(model, ["features.9"])


def test_layers_of_a_custom_forward_form_no_group():
    model = small_cnn()  # conv1, bn1, relu1 are attributes of a custom forward, not an nn.Sequential
    assert conv_groups(model) == [] and removable_layers(model, torch.zeros(1, 3, 16, 16)) == []
    table = removable_layers(model, torch.zeros(1, 3, 16, 16), explain=True).set_index("layer")
    assert "nn.Sequential" in table.loc["conv1", "reason"] and not table["removable"].any()


def test_conv_settings_that_keep_the_shape():
    assert conv_shape_change(nn.Conv2d(4, 4, 5, padding=2)) is None
    assert conv_shape_change(nn.Conv2d(4, 4, 3, padding=2, dilation=2)) is None
    assert conv_shape_change(nn.Conv1d(4, 4, 3, padding="same")) is None
    assert conv_shape_change(nn.Conv2d(4, 4, (1, 3), padding=(0, 1))) is None
    assert conv_shape_change(nn.Conv2d(4, 4, 3, stride=(1, 2), padding=1)) == "changes the spatial size (stride 1x2)"


def test_residual_and_stack_rules_are_unchanged():
    x = torch.zeros(1, 3, 32, 32)
    assert removable_layers(resnet20(), x) == ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2",
                                               "layer3.1", "layer3.2"]
    table = removable_layers(resnet20(), x, explain=True).set_index("layer")
    assert table.loc["layer2.0", "reason"] == "changes the shape (1, 16, 32, 32) -> (1, 32, 16, 16)"
    assert table.loc["layer1.0.conv1", "reason"].startswith("part of the residual block 'layer1.0'")


def test_blocks_preset_of_a_plain_stack_picks_its_shape_keeping_groups():
    assert select_layers(_nested(), "blocks") == ["features.1", "features.4"]
    # VGG's flat groups are named by their conv (each is hooked from its conv's input to its ReLU's output)
    assert select_layers(vgg11(), "blocks") == ["features.11", "features.18", "features.22", "features.25"]


def test_layer_chain_names_the_layers_that_do_not_follow_one_another():
    assert layer_chain(resnet20(), torch.zeros(2, 3, 32, 32), "blocks")["chained"].all()
    model = _nested()
    chain = layer_chain(model, X, "blocks")
    assert chain[["previous", "layer", "chained"]].values.tolist() == [["features.1", "features.4", False]]
    assert chain["reason"][0] == "input (2, 16, 4, 4) is not the output (2, 8, 8, 8) of 'features.1'"
    relus = layer_chain(model, X, "relus")  # same shapes, but a conv and a BN run between two ReLUs
    assert not relus["chained"][0] and "something runs between them" in relus["reason"][0]
    with pytest.raises(ValueError, match=r"Layers 'features.1' and 'features.4' are not chained.*n_max=1"):
        check_chained(model, (X, torch.zeros(4)), "blocks")
    assert check_chained(model, X, ["features.0", "features.1"]) is None


def test_redundant_layers_flags_only_removable_conv_groups():
    model = vgg11()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    curve = pd.DataFrame({"layer": convs, "modularity": [0.1] * len(convs)})  # a plateau everywhere
    flags = redundant_layers(curve, removable=removable_layers(model, torch.zeros(1, 3, 32, 32)))
    assert flags.loc[flags["redundant"], "layer"].tolist() == ["features.11", "features.18", "features.22",
                                                               "features.25"]
