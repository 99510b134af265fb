"""capture_activations: stream data through a model and keep the selected layers' outputs, in
this process (``in_process_capture``) or, with a cluster runner and a store, in shards written by
the workers (``sharded_capture``)."""
from __future__ import annotations

from torch import nn

from ..execution.runner import planning
from .activations import Activations
from .in_process_capture import capture_in_process
from .sharded_capture import capture_shards


def capture_activations(model: nn.Module, data, layers="blocks", *, reduce="auto", output=None,
                        batch_axis=0, inputs: bool = False, label_key="auto", max_samples: int | None = None,
                        device=None, store=None, progress: bool = True, batch_size: int = 256,
                        client=None) -> Activations:
    """Run ``data`` through ``model`` (eval mode, ``torch.no_grad()``) and keep the outputs of ``layers``.

    Each batch's output of each layer is taken out of the module's return value (``output``),
    its sample axis moved first (``batch_axis``) and checked against the batch's sample count,
    reduced on the model's device (``reduce``) and copied once into float32 arrays: in memory,
    preallocated for the known sample count, or streamed to ``store``. The model's train/eval
    modes and ``requires_grad`` flags are restored.

    Parameters
    ----------
    model : nn.Module
        Any model; its weights must be materialised (not on the meta device).
    data : tensor, array, DataFrame, tuple, list, dict, Dataset, DataLoader or iterable
        A tensor/array of inputs, samples on the first axis, or a pandas DataFrame of numeric
        feature columns (its ``to_numpy()``; a ``label``/``labels`` column is refused: pass
        ``(df.drop(columns="label"), df["label"])``); ``(X,)``, ``(X, y)`` or ``[X, y]``, where
        ``X`` may be a tuple of the model's positional inputs, ``((X1, X2), y)`` calling
        ``model(x1, x2)``; a dict of per-sample arrays, passed to the model as keyword arguments
        (e.g. ``input_ids``, ``attention_mask``); a Dataset, map-style or iterable, which yields
        samples and is batched by a DataLoader of ``batch_size`` (not shuffled); a DataLoader or
        any other iterable (list, generator) of batches: tensors, ``(x, y, ...)`` (entries after
        the labels are not used) or dicts. An item that is plainly a single sample (a scalar
        label, a 0-d tensor) is refused, saying how to batch samples. Floating inputs are cast
        to the model's dtype (float64 numpy arrays included); integer and bool inputs are passed
        as they are (token ids); labels may be numbers or strings.
    layers : str, list of str or callable
        Module names, glob patterns (``"layer1.*"``), a predicate ``(name, module) -> bool`` or a
        preset: ``"blocks"`` (residual blocks; for transformers the stack of repeated blocks,
        BERT's ``encoder.layer.N``, GPT-2's ``h.N``, LLaMA's ``layers.N``; a plain stack's shape-keeping
        conv groups: an ``nn.Sequential(conv, bn, relu)``, or a flat group of VGG's ``features``
        named by its conv and recorded at its last member's output, its input at the conv's
        (``repgraph.hooks.layers.layer_ends``); else top-level stages),
        ``"convs"``, ``"relus"``, ``"modularity"`` (Lu et al.: stem conv + every residual block;
        every conv for VGG).
    reduce : str, callable or None
        ``"auto"`` (default): ``"flatten"``; when a layer gives (N, T, D) token states and the
        model is called with an ``attention_mask`` (a dict batch carrying one, e.g. BERT's),
        flatten keeps the padded positions too, so a ``FutureWarning`` says that the default for
        those outputs becomes ``"token_mean"`` in the next release (pass ``reduce=`` to choose and
        silence it). ``"flatten"`` (N, prod(...)) — Lu et al.'s features; ``"spatial_mean"`` (channels-first
        maps: mean over every axis after the channel axis); ``"token_mean"`` (mean over tokens,
        padding excluded when the batch carries an ``attention_mask``); ``"first_token"`` (CLS);
        ``"last_token"`` (the last non-padding token); ``"mean"`` (``"spatial_mean"`` where that
        is unambiguous, an error on 3-D outputs); None (the raw output); or a callable
        ``output -> (N, ...)`` (given ``attention_mask=`` when it takes that keyword).
    output : int, str, dict or None
        For modules returning tuples, dicts or Hugging Face ``ModelOutput``s: the index or key of
        the tensor to keep (or ``{layer or glob: index or key}``); None keeps the first tensor
        (a transformer block's hidden states).
    batch_axis : int or dict
        The axis of the samples in each output (``{layer or glob: axis}`` for some layers), e.g. 1
        for ``nn.TransformerEncoderLayer(batch_first=False)``'s (T, N, D) outputs.
    inputs : bool
        Also keep each layer's input (its first positional tensor argument or its
        ``hidden_states`` keyword) under ``f"{name}:input"``, with the same reducer and batch axis.
    label_key : str or None
        The key of the labels in dict batches (not passed to the model); ``"auto"`` takes
        ``"labels"`` or ``"label"`` when present (a batch with both is an error: say which);
        None keeps no labels.
    max_samples : int, optional
        Stop after this many samples.
    device : str or torch.device, optional
        Where the forward runs (default: where the model is); the model must already be there.
    store : str or Path, optional
        A folder: each layer streams to one ``.npy`` file there (peak memory near one batch). A
        complete store of the same capture (same model weights, layers, options and every input
        and label, checked by hash without running the model) is reused after its checksums are
        verified; a store of another capture is an error. A capture killed half-way resumes from
        its last committed batch. Concurrent captures into one folder wait for each other
        (same capture) or fail (another capture).
    progress : bool
        Show a progress bar.
    batch_size : int
        Samples per forward pass for tensors, arrays, ``(X, y)``, dicts and Datasets (a DataLoader
        or an iterable keeps its own batches). Memory and speed only: each sample's activations do
        not depend on it beyond the float rounding of batched kernels.
    client : distributed.Client, optional
        Capture on this Dask cluster, whose workers write their shards of ``store`` (required with
        a client). Default: an enclosing ``repgraph.parallel`` block's client when ``store`` is
        given; a capture without ``store`` inside such a block runs here, in memory. A closed
        client is a ValueError saying to open one or drop ``client=``.

    Returns
    -------
    Activations
        Layer name -> float32 array (N, ...), in the order the layers first fired, with ``labels``
        when the data carries them.

    Raises
    ------
    ValueError
        For a bad ``batch_size`` or ``max_samples``, an unknown layer or an empty ``layers``
        list, a layer that never fires,
        an output whose sample axis does not hold the batch's samples, a model on the meta device
        or on another device, a CUDA device without a GPU, a store of another capture or a
        damaged store.
    TypeError
        For a module output or data form that holds no tensor to capture, complex activations
        (name the layer; a ``reduce`` callable must make them real) or a ``store`` that is not a
        path. An error the model raises on the first batch keeps its type and gains a line on
        what the batch held when the data form may be its cause (integer inputs to a floating
        model; single samples given as batches).
    OSError
        When the disk fills up while writing a store (its partial files are deleted).

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022 (the
    ``"modularity"`` preset and the flattened features). Recording follows PyTorch's forward
    hooks (``torch.nn.Module.register_forward_hook``), as ``ActivationRecorder``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> X, y = torch.randn(10, 1, 8, 8), torch.arange(10) % 2
    >>> acts = capture_activations(model, (X, y), layers=["0", "2"], progress=False)
    >>> acts["0"].shape, acts["2"].shape, acts.labels[:4].tolist()
    ((10, 144), (10, 32), [0, 1, 0, 1])
    >>> capture_activations(model, X, layers="2", reduce="spatial_mean", progress=False)["2"].shape
    (10, 2)
    """
    if store is not None or client is not None:
        with planning(client) as runner:
            if not runner.in_process:
                return capture_shards(model, data, layers, reduce=reduce, output=output, batch_axis=batch_axis,
                                      inputs=inputs, label_key=label_key, max_samples=max_samples, device=device,
                                      store=store, progress=progress, batch_size=batch_size, runner=runner)
    return capture_in_process(model, data, layers, reduce=reduce, output=output, batch_axis=batch_axis, inputs=inputs,
                              label_key=label_key, max_samples=max_samples, device=device, store=store,
                              progress=progress, batch_size=batch_size)
