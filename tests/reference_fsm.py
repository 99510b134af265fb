"""A line-for-line port of FSM's channel scoring (github.com/lscgx/FSM at
0cb01ea6a53ee397f58e056df251655b6ccd9a47, ``main.py``): ``get_conv_names``, ``get_bn_names``,
``get_relu_expect`` (its 'resnet_56' branch, which indexes the BNs by position, as its 'vgg_16_bn'
branch does through ``cfg``), ``get_effect_for_dstr`` (``type='mean'``) and the scoring part of
``iter_vgg16bn``'s per-layer loop (the last conv's effect is its ``relu_expect``). Kept as written: registration order of convs and BNs, the
in-place ``norm_weight[i] = 1e-5`` for negative γ (here on a copy of the model, so the caller's
model is not changed), and ``scipy.stats.norm(β, γ).expect(lb=0)``. Only Python 2-isms and the
argument plumbing (``args.arch``) differ. Independent of repgraph."""
import copy

import numpy as np
import torch.nn as nn
from scipy.stats import norm


def get_conv_names(model=None):
    conv_names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            conv_names.append(name + '.weight')
    return conv_names


def get_bn_names(model=None):
    bn_names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            bn_names.append(name)
    return bn_names


def get_relu_expect(model=None, layer_id=0):
    relu_expect = []
    state_dict = model.state_dict()
    bn_names = get_bn_names(model)
    norm_weight = state_dict[bn_names[layer_id] + '.weight']
    norm_bias = state_dict[bn_names[layer_id] + '.bias']
    num = len(norm_bias)
    for i in range(num):
        if norm_weight[i].item() < 0.:
            norm_weight[i] = 1e-5
        _norm = norm(norm_bias[i].item(), norm_weight[i].item())
        relu_expect.append(_norm.expect(lb=0))
    return relu_expect


def get_effect_for_dstr(model, feature_id, next_layer_id, relu_expect_i, type='mean', slices=None):
    conv_names = get_conv_names(model=model)
    state_dict_conv = model.state_dict()[conv_names[next_layer_id]]
    num = len(state_dict_conv)
    offset = 0
    if slices is not None:
        offset = slices[0]
    value = 0.
    _max = 0.
    for i in range(num):
        temp = abs(state_dict_conv[i][feature_id + offset].sum().item() * relu_expect_i)
        value += temp
        _max = max(_max, temp)
    if type == 'mean':
        return value / num
    elif type == 'maxm':
        return _max
    return value


def reference_effects(model) -> list:
    """``effects`` of every conv of a plain conv-BN-ReLU chain (VGG), as ``iter_vgg16bn`` computes
    them layer by layer (the scores of a layer do not depend on the pruning of earlier layers'
    masks, which only zero the pruned filters' weights: here the model is not pruned)."""
    model = copy.deepcopy(model)
    conv_names = get_conv_names(model)
    last = len(conv_names) - 1
    out = []
    for layer_id in range(len(conv_names)):
        _num = len(model.state_dict()[conv_names[layer_id]])
        relu_expect = get_relu_expect(model=model, layer_id=layer_id)
        effects = []
        for i in range(_num):
            if layer_id == last:
                effect = relu_expect[i]
            else:
                effect = get_effect_for_dstr(model, i, layer_id + 1, relu_expect[i], type='mean')
            effects.append(effect)
        out.append(np.array(effects, dtype=np.float64))
    return out
