"""Data forms and options a new user gets wrong: each is accepted deliberately or refused with an
error that names the argument (or layer) and the fix, never torch's or numpy's internals."""
import collections

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from repgraph import capture_activations, list_layers
from repgraph.hooks.recorder import ActivationRecorder

X = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
Y = torch.arange(10) % 2


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _capture(data, model=None, **kwargs):
    kwargs.setdefault("layers", ["0"])
    return capture_activations(model or _model(), data, progress=False, **kwargs)


def _expected(model, x):
    with torch.no_grad():
        return model[0](torch.as_tensor(x, dtype=torch.float32)).numpy()


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x1, x2):
        return self.a(x1) + self.b(x2)


class Samples(IterableDataset):
    def __init__(self, labelled):
        self.labelled = labelled

    def __iter__(self):
        return ((X[i], Y[i]) if self.labelled else X[i] for i in range(len(X)))


class FFT(nn.Module):
    def forward(self, x):
        return torch.fft.fft(x)


# --- data forms ------------------------------------------------------------------------------------

def test_a_0d_tensor_is_refused_naming_data():
    with pytest.raises(ValueError, match=r"data is a 0-d tensor.*samples on their first axis"):
        _capture(torch.tensor(1.0))


def test_a_dataframe_of_features_is_taken_as_its_values():
    model = _model()
    frame = pd.DataFrame(X.numpy(), columns=list("abcd"))
    acts = _capture(frame, model)
    np.testing.assert_allclose(acts["0"], _expected(model, X), atol=1e-6)
    paired = _capture((frame, pd.Series(Y.numpy())), model)
    assert paired.labels.tolist() == Y.tolist()


def test_a_dataframe_with_a_label_or_text_column_is_refused():
    frame = pd.DataFrame(X.numpy(), columns=list("abcd")).assign(label=Y.numpy())
    with pytest.raises(ValueError, match=r"'label' column.*df.drop\(columns='label'\), df\['label'\]"):
        _capture(frame)
    with pytest.raises(TypeError, match=r"non-numeric column\(s\) \['name'\]"):
        _capture(pd.DataFrame({"name": ["x"] * 10}))


def test_a_tuple_of_three_arrays_is_refused_saying_what_to_pass():
    with pytest.raises(TypeError, match=r"tuple of 3 entries.*\(X,\) or \(X, y\)"):
        _capture((X, Y, torch.ones(10)))


def test_tuple_inputs_go_to_the_model_as_positional_arguments():
    model = TwoInputs()
    X2 = X.flip(0)
    acts = capture_activations(model, ((X, X2), Y), layers=["a", "b"], batch_size=3, progress=False)
    with torch.no_grad():
        np.testing.assert_allclose(acts["b"], model.b(X2).numpy(), atol=1e-6)
    assert acts.labels.tolist() == Y.tolist()
    loader = DataLoader([((X[i], X2[i]), Y[i]) for i in range(10)], batch_size=4)
    np.testing.assert_allclose(capture_activations(model, loader, layers=["b"], progress=False)["b"], acts["b"])
    with pytest.raises(ValueError, match=r"y has shape \(10, 4\).*two inputs pass \(\(X1, X2\), y\)"):
        capture_activations(model, (X, X2), layers=["a"], progress=False)


def test_second_inputs_count_in_the_store_fingerprint(tmp_path):
    model = TwoInputs()
    capture_activations(model, ((X, X), Y), layers=["a"], store=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="differ in: data"):
        capture_activations(model, ((X, X + 1), Y), layers=["a"], store=tmp_path / "s", progress=False)


def test_a_tuple_of_batches_still_runs_batch_by_batch():
    acts = _capture(((X[:5], Y[:5]), (X[5:], Y[5:])))
    assert acts.labels.tolist() == Y.tolist()


def test_an_iterable_dataset_of_samples_is_batched():
    model = _model()
    acts = _capture(Samples(labelled=True), model, batch_size=4)
    np.testing.assert_allclose(acts["0"], _expected(model, X), atol=1e-6)
    assert acts.labels.tolist() == Y.tolist()
    assert _capture(Samples(labelled=False), model).n_samples == 10


def test_single_labelled_samples_as_batches_say_how_to_batch():
    with pytest.raises(ValueError, match=r"single samples, not batches.*DataLoader\(samples, batch_size=64\)"):
        _capture([(X[i], Y[i]) for i in range(10)])
    with pytest.raises(ValueError, match="single samples"):
        _capture(DataLoader(list(zip(X, Y)), batch_size=None))


def test_a_list_of_per_sample_tensors_says_how_to_batch():
    with pytest.raises(ValueError, match=r"(?s)each item of data is taken as one batch.*torch.stack\(samples\)"):
        _capture([X[i] for i in range(10)])


def test_label_and_labels_keys_with_auto_are_ambiguous():
    data = {"input": X, "label": Y, "labels": Y}
    with pytest.raises(ValueError, match=r"both 'labels' and 'label'.*label_key='labels' or label_key='label'"):
        _capture(data)


def test_y_that_is_not_per_sample_names_y():
    with pytest.raises(ValueError, match=r"y is a int, not one label per input"):
        _capture((X, 3))
    assert _capture((X, None)).labels is None


def test_dict_without_tensors_names_its_keys():
    with pytest.raises(ValueError, match=r"at least one per-sample tensor.*'x': list"):
        _capture({"x": [1.0, 2.0]})


# --- layers, outputs, options ------------------------------------------------------------------------

def test_an_empty_layer_list_is_refused():
    with pytest.raises(ValueError, match=r"layers=\[\] selects no layer"):
        _capture(X, layers=[])
    with pytest.raises(ValueError, match=r"layers=\(\) selects no layer"):
        ActivationRecorder(_model(), ())


@pytest.mark.parametrize("reduce", ["flatten", None])
def test_complex_activations_are_refused_naming_the_layer(reduce):
    with pytest.raises(TypeError, match=r"Layer '0' gives complex values.*reduce= a callable"):
        capture_activations(nn.Sequential(FFT()), X, layers=["0"], reduce=reduce, progress=False)


def test_a_reducer_making_complex_values_real_is_accepted():
    acts = capture_activations(nn.Sequential(FFT()), X, layers=["0"], reduce=lambda t: t.abs(), progress=False)
    np.testing.assert_allclose(acts["0"], torch.fft.fft(X).abs().numpy(), atol=1e-5)


def test_integer_inputs_to_a_float_model_say_to_cast():
    with pytest.raises(RuntimeError, match=r"(?s)input=\(10, 4\) torch.int64.*cast them, e.g. X.float\(\)"):
        _capture(torch.ones(10, 4, dtype=torch.long))


def test_store_of_the_wrong_type_names_store():
    with pytest.raises(TypeError, match="store must be a folder path"):
        _capture(X, store=5)


# --- list_layers takes capture's data forms -----------------------------------------------------------

@pytest.mark.parametrize("example", [X.numpy()[:1], X.double().numpy()[:1], pd.DataFrame(X.numpy()[:1]),
                                     (X[:1], Y[:1]), DataLoader(list(zip(X, Y)), batch_size=1)])
def test_list_layers_accepts_the_data_forms_of_capture(example):
    table = list_layers(_model(), example).set_index("name")
    assert table.loc["2", "output_shape"] == (1, 2) and table["calls"].tolist() == [1, 1, 1]


def test_list_layers_refuses_several_positional_inputs():
    with pytest.raises(TypeError, match="2 positional inputs.*dict"):
        list_layers(TwoInputs(), ((X, X), Y))


# --- a closed Dask client --------------------------------------------------------------------------

def test_a_closed_dask_client_says_to_open_one(tmp_path):
    distributed = pytest.importorskip("distributed")
    client = distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    client.close()
    with pytest.raises(ValueError, match=r"client= is a dask Client that is closed.*drop client="):
        _capture(X, store=tmp_path / "s", client=client)


def test_tuple_inputs_on_a_cluster_equal_the_capture_here(tmp_path):
    distributed = pytest.importorskip("distributed")
    model, X2 = TwoInputs(), X.flip(0)
    here = capture_activations(model, ((X, X2), Y), layers=["b"], batch_size=4, progress=False)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        there = capture_activations(model, ((X, X2), Y), layers=["b"], batch_size=4, store=tmp_path / "s",
                                    client=client, progress=False)
    np.testing.assert_array_equal(there["b"], here["b"])
    assert there.labels.tolist() == Y.tolist()
