"""A byte-level GPT-2 (vocabulary 256) built from a config with random weights: the language model of
repgraph's layer-redundancy benchmark."""
from __future__ import annotations

import torch


def byte_gpt(n_layer: int = 8, n_embd: int = 256, n_head: int = 4, n_positions: int = 256, *,
             dropout: float = 0.0, seed: int = 0):
    """A randomly initialised Hugging Face ``GPT2LMHeadModel`` over bytes (vocabulary 256).

    Built from a ``GPT2Config`` — nothing is downloaded — with ``vocab_size=256`` (the tokens of
    ``repgraph.datasets.byte_corpus``), no special tokens (``bos_token_id``, ``eos_token_id`` and
    ``pad_token_id`` are None, so ``generate`` always runs ``max_new_tokens``) and the same dropout
    for embeddings, attention and residuals. Its blocks are ``transformer.h.0`` …
    ``transformer.h.{n_layer-1}``, removable with ``repgraph.pruning.remove_layers``.

    Parameters
    ----------
    n_layer : int, default 8
        Transformer blocks.
    n_embd : int, default 256
        Hidden size; a multiple of ``n_head``.
    n_head : int, default 4
        Attention heads.
    n_positions : int, default 256
        Context length (longest window the model reads).
    dropout : float, default 0.0
        ``resid_pdrop``, ``embd_pdrop`` and ``attn_pdrop``.
    seed : int, default 0
        Seeds the initialisation (inside a forked RNG state: the global RNG is untouched), so the
        same arguments give the same weights.

    Returns
    -------
    transformers.GPT2LMHeadModel
        In eval mode, on the CPU.

    Raises
    ------
    ImportError
        When transformers is not installed (``pip install repgraph[transformers]``).
    ValueError
        When ``n_embd`` is not a multiple of ``n_head``.

    Examples
    --------
    >>> import torch
    >>> model = byte_gpt(n_layer=2, n_embd=32, n_head=2, n_positions=64)
    >>> model(torch.zeros(1, 10, dtype=torch.long)).logits.shape
    torch.Size([1, 10, 256])
    """
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as err:
        raise ImportError("byte_gpt needs Hugging Face transformers: pip install repgraph[transformers]") from err
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head}).")
    config = GPT2Config(vocab_size=256, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model.eval()
