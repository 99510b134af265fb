"""Hooks that repgraph adds to a user's model for one analysis: ids that never collide with the
hooks already on the model, and removal of repgraph's own entries only."""
from __future__ import annotations

from torch import nn
from torch.utils.hooks import RemovableHandle


def reserve_hook_ids(model: nn.Module) -> None:
    """Advance torch's hook-id counter past every id held by the hook dicts of ``model`` and its
    submodules, so that a hook registered next cannot overwrite one of them.

    Torch keys a module's hooks by ids from one counter per process
    (``torch.utils.hooks.RemovableHandle.next_id``), and a module's hook dicts are pickled with
    their ids: in a process that has unpickled a model (``torch.load(..., weights_only=False)``, a
    Dask worker), the counter lies below the ids the model holds, and a new hook would replace
    the user's under the same id. Torch itself advances the counter this way when it unpickles a
    handle. Call it right before registering hooks, by repgraph or by a library it calls
    (Torch-Pruning's tracer).

    Parameters
    ----------
    model : nn.Module
        The model about to be hooked.
    """
    held = [key for m in model.modules() for name, hooks in vars(m).items()
            if "hooks" in name and isinstance(hooks, dict) for key in hooks if isinstance(key, int)]
    if held:
        RemovableHandle.next_id = max(RemovableHandle.next_id, max(held) + 1)


class TemporaryHooks:
    """Forward hooks and forward pre-hooks added to the modules of one model, and removed again.

    The model's hook-id counter is advanced past the model's own hooks first
    (``reserve_hook_ids``), so no hook of the user's is replaced, and ``remove`` deletes only the
    entries that still hold the hooks added here. The user's hooks keep running, before these
    (they were registered earlier).

    Parameters
    ----------
    model : nn.Module
        The model whose modules are hooked.
    """

    def __init__(self, model: nn.Module):
        reserve_hook_ids(model)
        self._added: list[tuple[RemovableHandle, dict, object]] = []

    def forward(self, module: nn.Module, hook, *, with_kwargs: bool = False) -> None:
        """``module.register_forward_hook(hook, with_kwargs=with_kwargs)``, removed by ``remove``."""
        handle = module.register_forward_hook(hook, with_kwargs=with_kwargs)
        self._added.append((handle, module._forward_hooks, hook))

    def pre(self, module: nn.Module, hook, *, with_kwargs: bool = False) -> None:
        """``module.register_forward_pre_hook(hook, with_kwargs=with_kwargs)``, removed by ``remove``."""
        handle = module.register_forward_pre_hook(hook, with_kwargs=with_kwargs)
        self._added.append((handle, module._forward_pre_hooks, hook))

    def remove(self) -> None:
        """Remove every hook added here whose entry still holds it; other entries stay."""
        for handle, hooks, hook in self._added:
            if hooks.get(handle.id) is hook:
                handle.remove()
        self._added = []
