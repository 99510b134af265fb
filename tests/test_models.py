import pytest
import torch
from torch import nn

from repgraph.models import MODELS, example_input, get_model, resnet20, resnet56, resnet110

SEQUENCE_MODELS = {"cnn1d", "resnet1d"}  # take (N, C, L); every other model takes (N, C, H, W)


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_runs_on_inputs_of_its_own_dimensionality(name):
    model = get_model(name, num_classes=7, in_channels=1).eval()
    if name in SEQUENCE_MODELS:
        x = example_input(name, batch_size=2, in_channels=1)
        assert x.shape == (2, 1, 40)  # MNIST-1D length
        assert model(x).shape == (2, 7)
        return
    for size in (16, 32):  # digits and CIFAR resolutions
        x = example_input(name, batch_size=2, in_channels=1, size=size)
        assert x.shape == (2, 1, size, size)
        assert model(x).shape == (2, 7)
    assert example_input(name).shape == (1, 3, 32, 32)


def test_example_input_rejects_unknown_models():
    with pytest.raises(ValueError, match="resnet1d"):
        example_input("resnet1D_")


def test_resnet20_option_a_has_the_published_parameter_count():
    # Worked by hand (He et al. report 0.27M): stem 3*16*9 + BN 32 = 464;
    # stage 1: 3 blocks * (2*16*16*9 + 2*32) = 14016;
    # stage 2: (16*32*9 + 32*32*9 + 128) + 2*(2*32*32*9 + 128) = 13952 + 37120 = 51072;
    # stage 3: (32*64*9 + 64*64*9 + 256) + 2*(2*64*64*9 + 256) = 55552 + 147968 = 203520;
    # fc 64*10 + 10 = 650. Total 269722.
    assert _params(resnet20(shortcut="A")) == 269722
    # option B adds two 1x1 projections with BN: (16*32 + 64) + (32*64 + 128) = 2752
    assert _params(resnet20(shortcut="B")) == 269722 + 2752


def test_depths_and_relu_modules():
    for factory, depth in ((resnet20, 20), (resnet56, 56), (resnet110, 110)):
        m = factory()
        convs3 = [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.kernel_size == (3, 3)]
        assert len(convs3) + 1 == depth  # 3x3 convs + the classifier
    block = resnet20().layer1[0]
    assert isinstance(block.relu1, nn.ReLU) and isinstance(block.relu2, nn.ReLU)
    assert block.relu1 is not block.relu2
    with pytest.raises(ValueError, match="shortcut"):
        resnet20(shortcut="C")
