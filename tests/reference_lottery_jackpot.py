"""A line-for-line port of the Lottery Jackpots search (github.com/zyxxmu/lottery-jackpots at
1b802ea6f39f50020553bdb3a9bf89f058287156): ``utils/conv_type.py`` lines 24-47 (``GetMask``,
``PretrainConv.__init__`` and ``forward``), 89-121 (``final_pop_up``) and 138-151
(``set_prune_rate``); ``cifar.py`` lines 127-154 (``generate_pr_cfg``, its 'l1' branch), 46-55
(``pop_up``), 57-81 (the training step, logging left out) and 252-269 (``get_optimizer``, 'sgd');
``imagenet.py`` lines 330-353 (``adjust_learning_rate``, 'cos' policy, no warm-up);
``utils/common.py`` lines 160-186 (``freeze_model_weights``, ``set_model_prune_rate``). Kept as
written: the unstable sorts, ``int(rate·N)`` pruned counts, the equal-count condition of the swap
and ``ceil(n·rate)``. The list-of-list indices (``idx0[[list]]``, deprecated in torch) are
written as the tuple torch reads them as. Otherwise only the argument plumbing (``args``, ``parser_args``, ``logger``, devices,
DataParallel, prints) differs. Independent of repgraph."""
import math

import torch
import torch.autograd as autograd
import torch.nn as nn
import torch.nn.functional as F


class GetMask(autograd.Function):
    @staticmethod
    def forward(ctx, mask, b_mask):
        return b_mask

    @staticmethod
    def backward(ctx, g):
        # send the gradient g straight-through on the backward pass.
        return g, None


class PretrainConv(nn.Conv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mask = nn.Parameter(torch.ones(self.weight.shape))
        self.b_mask = torch.ones(self.weight.shape, requires_grad=False)

    def forward(self, x):
        mask = GetMask.apply(self.mask, self.b_mask)
        sparseWeight = mask * self.weight
        x = F.conv2d(
            x, sparseWeight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return x

    def final_pop_up(self, rate):
        m = self.mask.clone().flatten()
        prune_num = int(self.prune_rate * self.mask.numel())
        sorted, _ = m.sort()

        flat_bm = self.b_mask.flatten()
        idx0 = torch.squeeze(torch.nonzero(flat_bm == 0))
        idx1 = torch.squeeze(torch.nonzero(flat_bm))
        pop_idx0 = torch.squeeze(torch.nonzero(m[idx0] > sorted[prune_num - 1]))
        pop_idx1 = torch.squeeze(torch.nonzero(m[idx1] <= sorted[prune_num - 1]))

        if pop_idx0.numel() != 0 and pop_idx1.numel() != 0 and pop_idx0.numel() == pop_idx1.numel():
            pop_num = pop_idx0.numel()
            _, sorted_pop_idx0 = torch.sort(m[idx0][pop_idx0], descending=True)
            _, sorted_pop_idx1 = torch.sort(m[idx1][pop_idx1], descending=False)
            pop_idx0 = [pop_idx0.tolist()]
            pop_idx1 = [pop_idx1.tolist()]
            sorted_pop_idx0 = [sorted_pop_idx0.tolist()]
            sorted_pop_idx1 = [sorted_pop_idx1.tolist()]
            if pop_num > 1:
                pop_num = math.ceil(len(sorted_pop_idx0[0]) * rate)
                flat_bm[idx0[tuple(pop_idx0)][sorted_pop_idx0[0][:pop_num]]] = 1
                flat_bm[idx1[tuple(pop_idx1)][sorted_pop_idx1[0][:pop_num]]] = 0
            else:
                flat_bm[idx0[tuple(pop_idx0)]] = 1
                flat_bm[idx1[tuple(pop_idx1)]] = 0
            return pop_num
        return 0

    def set_prune_rate(self, prune_rate):
        self.prune_rate = prune_rate
        w = self.weight.detach().cpu()
        w = w.view(-1)
        m = self.mask.detach().cpu()
        m = m.view(-1)
        b_m = self.b_mask.detach().cpu()
        b_m = b_m.view(-1)
        _, indice = torch.topk(torch.abs(w), int(w.size(0) * prune_rate), largest=False)
        b_m[indice] = 0
        m[indice] = 0.99
        self.b_mask = nn.Parameter(b_m.view(self.weight.shape), requires_grad=False)
        self.mask = nn.Parameter(m.view(self.weight.shape))


def generate_pr_cfg(model, prune_rate):
    pr_cfg = []
    weights = []
    for name, module in model.named_modules():
        if hasattr(module, "set_prune_rate") and name != 'fc' and name != 'classifier':
            conv_weight = module.weight.data.detach().cpu()
            weights.append(conv_weight.view(-1))
    all_weights = torch.cat(weights, 0)
    preserve_num = int(all_weights.size(0) * (1 - prune_rate))
    preserve_weight, _ = torch.topk(torch.abs(all_weights), preserve_num)
    threshold = preserve_weight[preserve_num - 1]
    for weight in weights:
        pr_cfg.append(torch.sum(torch.lt(torch.abs(weight), threshold)).item() / weight.size(0))
    pr_cfg.append(0)
    return pr_cfg


def set_model_prune_rate(model, pr_cfg):
    i = 0
    for n, m in model.named_modules():
        if hasattr(m, "set_prune_rate"):
            m.set_prune_rate(pr_cfg[i])
            i += 1


def freeze_model_weights(model):
    for n, m in model.named_modules():
        if hasattr(m, "weight") and m.weight is not None:
            m.weight.requires_grad = False
            if m.weight.grad is not None:
                m.weight.grad = None
            if hasattr(m, "bias") and m.bias is not None:
                m.bias.requires_grad = False
                if m.bias.grad is not None:
                    m.bias.grad = None


def get_optimizer(model, lr, momentum, weight_decay):
    parameters = list(model.named_parameters())
    bn_params = [v for n, v in parameters if ("bn" in n) and v.requires_grad]
    rest_params = [v for n, v in parameters if ("bn" not in n) and v.requires_grad]
    return torch.optim.SGD(
        [
            {"params": bn_params, "weight_decay": weight_decay},
            {"params": rest_params, "weight_decay": weight_decay},
        ],
        lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=False,
    )


def adjust_learning_rate(optimizer, epoch, lr0, num_epochs):
    lr = 0.5 * lr0 * (1 + math.cos(math.pi * epoch / num_epochs))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr


def pop_up(model, rate):
    pop_num = []
    for n, m in model.named_modules():
        if hasattr(m, "set_prune_rate"):
            pop_num.append(m.final_pop_up(rate))
    return pop_num


def search(model, loader, *, prune_rate, num_epochs, lr=0.1, momentum=0.9, weight_decay=5e-4, rate=1):
    """``get_model``'s pruning and freezing on ``model`` (already holding the pre-trained weights,
    as in ``imagenet.py``), then ``num_epochs`` epochs of the search; returns the swaps per step."""
    pr_cfg = generate_pr_cfg(model, prune_rate)
    set_model_prune_rate(model, pr_cfg)
    freeze_model_weights(model)
    optimizer = get_optimizer(model, lr, momentum, weight_decay)
    loss_func = nn.CrossEntropyLoss()
    swaps = []
    for epoch in range(num_epochs):
        adjust_learning_rate(optimizer, epoch, lr, num_epochs)
        model.train()
        for inputs, targets in loader:
            optimizer.zero_grad()
            output = model(inputs)
            loss = loss_func(output, targets)
            loss.backward()
            optimizer.step()
            swaps.append(pop_up(model, rate))
    return swaps
