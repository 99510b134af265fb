"""A user's model from a file or folder: a pickled ``nn.Module`` (trusted only) or a Hugging Face
folder, loaded without any download; TorchScript files are recognised and refused with the reason.
``expected_input`` says in words what input a model takes."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def load_user_model(path, *, trust_pickle: bool = False):
    """Load a model saved by its user, in eval mode on the CPU.

    - a **folder with** ``config.json``: a Hugging Face model, ``AutoModelForCausalLM`` when the
      config's ``architectures`` name a ``...ForCausalLM`` class, else ``AutoModel``, through
      ``from_pretrained(path, local_files_only=True)`` — nothing is downloaded;
    - a **pickled module** (``torch.save(model)``): ``torch.load(path, weights_only=False)``,
      only with ``trust_pickle=True``, since unpickling runs whatever code the file names;
    - a **TorchScript file** (``torch.jit.save``) is refused: a ``ScriptModule`` takes no forward
      hooks, through which every analysis reads the layers.

    Parameters
    ----------
    path : str or Path
        The file or folder.
    trust_pickle : bool, default False
        Allow unpickling a file that is not TorchScript. Pass it only for files you made or trust.

    Returns
    -------
    torch.nn.Module or torch.jit.ScriptModule

    Raises
    ------
    ValueError
        For a path that does not exist, a folder without ``config.json``, a TorchScript file, a
        pickled file without ``trust_pickle``, and a file that holds no ``nn.Module`` (a state
        dict: save the module itself).

    References
    ----------
    PyTorch, "Saving and loading models" (``torch.jit.save``; ``torch.load`` and its
    ``weights_only`` safety default); Hugging Face ``from_pretrained(local_files_only=True)``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch import nn
    >>> path = tempfile.mkdtemp() + "/m.pt"
    >>> torch.save(nn.Linear(3, 2), path)
    >>> load_user_model(path, trust_pickle=True)(torch.zeros(1, 3)).shape
    torch.Size([1, 2])
    """
    path = Path(path)
    if path.is_dir():
        return _hugging_face(path)
    if not path.is_file():
        raise ValueError(f"--model {str(path)!r} is neither a built-in model name nor an existing file or folder.")
    try:
        torch.jit.load(str(path), map_location="cpu")
    except RuntimeError:
        pass  # not a TorchScript archive
    else:
        raise ValueError(f"--model {str(path)!r} is a TorchScript file: a ScriptModule takes no forward hooks "
                         "(PyTorch: 'register_forward_hook is not supported on ScriptModules'), and every analysis "
                         "of repgraph reads layers through them. Save the nn.Module itself, torch.save(model, path), "
                         "and pass --trust-pickle, or save a Hugging Face folder (save_pretrained).")
    if not trust_pickle:
        raise ValueError(f"--model {str(path)!r}: a pickled nn.Module (torch.save(model)) runs code named in the "
                         "file when it is loaded; pass --trust-pickle (trust_pickle=True) only for a file you made "
                         "or trust.")
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"--model {str(path)!r} could not be unpickled: {err}") from err
    if not isinstance(model, torch.nn.Module):
        hint = (" It holds a state dict (weights without the architecture): save the module itself, "
                "torch.save(model, path)." if isinstance(model, dict) else "")
        raise ValueError(f"--model {str(path)!r} holds a {type(model).__name__}, not an nn.Module.{hint}")
    return model.eval()


def _hugging_face(folder: Path):
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"--model {str(folder)!r} is a folder without config.json; pass a Hugging Face model "
                         "folder (save_pretrained) or a model file.")
    import transformers

    architectures = json.loads(config.read_text()).get("architectures") or []
    causal = any(str(a).endswith("ForCausalLM") for a in architectures)
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    return auto.from_pretrained(str(folder), local_files_only=True).eval()


def expected_input(model) -> str:
    """In words, the input ``model`` takes, read from its first layer that fixes it: an embedding's
    token ids, a convolution's channels, a linear layer's features.

    Parameters
    ----------
    model : nn.Module
        The model.

    Returns
    -------
    str
        E.g. ``"images (N, 3, H, W) of floats"``; ``"inputs its forward accepts"`` when no such
        layer is found.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            return f"token ids (N, L): integers below {module.num_embeddings}"
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            axes = {1: "L", 2: "H, W", 3: "D, H, W"}[len(module.kernel_size)]
            return f"{'sequences' if len(module.kernel_size) == 1 else 'images'} (N, {module.in_channels}, {axes}) " \
                   "of floats"
        if isinstance(module, torch.nn.Linear):
            return f"vectors (N, {module.in_features}) of floats"
    return "inputs its forward accepts"

