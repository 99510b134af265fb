"""The ReSi-style benchmark (repgraph.workflows.resi_benchmark): its metrics against values worked
out by hand (or by scipy), and the small setting end to end."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import scipy.spatial.distance
import torch

from repgraph.workflows import resi_benchmark as rb

# Four models in groups A = {0, 1}, B = {2, 3}.
S = np.array([[1.0, 0.8, 0.3, 0.6],
              [0.8, 1.0, 0.5, 0.2],
              [0.3, 0.5, 1.0, 0.4],
              [0.6, 0.2, 0.4, 1.0]])
GROUPS = ["A", "A", "B", "B"]


def test_group_separation_by_hand():
    # A: in-group 0.8 against cross 0.3, 0.6, 0.5, 0.2: no violation, the positive ranks first (AP 1).
    # B: in-group 0.4 against cross 0.3, 0.5, 0.6, 0.2: 0.4 <= 0.5 and 0.4 <= 0.6 (2 of 4); ranked
    #    0.6, 0.5, 0.4, ... the positive comes third: AP = precision at its recall = 1/3.
    r = rb.group_separation(S, GROUPS)
    assert r["violation_rate_per_group"] == [0.0, 0.5]
    assert r["auprc_per_group"] == pytest.approx([1.0, 1 / 3])
    assert r["violation_rate"] == 0.25
    assert r["auprc"] == pytest.approx(2 / 3)
    # the same as distances (lower is more similar)
    d = rb.group_separation(1.0 - S, GROUPS, higher_is_more_similar=False)
    assert d["violation_rate"] == 0.25 and d["auprc"] == pytest.approx(2 / 3)


def test_violation_rate_counts_ties_and_auprc_is_sklearns():
    assert rb.violation_rate([0.5], [0.5, 0.1]) == 0.5   # the tie is a violation (ReSi: in <= cross)
    assert rb.violation_rate([0.1], [0.5], higher_is_more_similar=False) == 0.0
    # in-group 0.9, 0.4; cross 0.7, 0.2: ranked in(0.9), cross(0.7), in(0.4), cross(0.2): AP = (1 + 2/3) / 2
    assert rb.auprc([0.9, 0.4], [0.7, 0.2]) == pytest.approx(5 / 6)


def test_monotonicity_spearman_by_hand():
    i = np.arange(5)
    assert rb.monotonicity_spearman(-np.abs(i[:, None] - i[None, :])) == 1.0
    assert rb.monotonicity_spearman(np.abs(i[:, None] - i[None, :]).astype(float)) == -1.0
    M = np.array([[1.0, 0.9, 0.6, 0.7],
                  [0.9, 1.0, 0.8, 0.5],
                  [0.6, 0.8, 1.0, 0.9],
                  [0.7, 0.5, 0.9, 1.0]])
    # row 0 forward: (0.9, 0.6, 0.7) at distances (1, 2, 3): ranks (3, 1, 2) vs (1, 2, 3), sum d^2 = 6,
    #   rho = 1 - 6*6/(3*8) = -0.5 -> +0.5; row 1 forward (0.8, 0.5) -> +1; row 2 backward (0.6, 0.8) at
    #   distances (2, 1) -> +1; row 3 backward (0.7, 0.5, 0.9) at (3, 2, 1): rho = -0.5 -> +0.5; rows with
    #   a single target are NaN and dropped: mean (0.5 + 1 + 1 + 0.5) / 4
    assert rb.monotonicity_spearman(M) == pytest.approx(0.75)
    assert rb.monotonicity_spearman(1 - M, higher_is_more_similar=False) == pytest.approx(0.75)
    assert math.isnan(rb.monotonicity_spearman(np.ones((4, 4))))


def test_functional_distances():
    a = np.log(np.array([[0.5, 0.5], [0.2, 0.8]]))
    b = np.array([[100.0, 0.0], [np.log(0.2), np.log(0.8)]])
    expected = (scipy.spatial.distance.jensenshannon([0.5, 0.5], [1.0, 0.0], base=2) ** 2 + 0.0) / 2
    assert rb.jsd(a, b) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(((0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2)) + math.log2(4 / 3)) / 4)
    assert rb.disagreement(np.array([[1, 0], [0, 1], [1, 0]]), np.array([[0, 1], [0, 1], [1, 0]])) == 1 / 3


def test_output_correlation_statistics_and_exact_p():
    rep = np.array([0.5, 0.4, 0.3, 0.2, 0.1])      # similarities: distances -rep rise with func
    func = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    r = rb.output_correlation(rep, func, n_resamples=999)
    for name in ("pearsonr", "spearmanr", "kendalltau"):
        stat, p = r[name]
        assert stat == pytest.approx(1.0)
        assert p == pytest.approx(2 / 120)           # 5! = 120 <= n_resamples: exact; only the identity and
    noisy = np.array([0.5, 0.3, 0.4, 0.1, 0.2])      # the reversal are as extreme (two-sided)
    r = rb.output_correlation(noisy, func, n_resamples=999)
    assert r["spearmanr"][0] == pytest.approx(scipy.stats.spearmanr(-noisy, func).statistic)
    assert r["pearsonr"][0] == pytest.approx(scipy.stats.pearsonr(-noisy, func).statistic)
    assert r["kendalltau"][0] == pytest.approx(scipy.stats.kendalltau(-noisy, func).statistic)
    assert all(math.isnan(v) for v in rb.output_correlation([0.1, 0.2], [1.0, 2.0])["spearmanr"])


def test_rank_measures_like_resi():
    rec = pd.DataFrame([
        # grouping test: AUPRC a 0.9, b 0.5, c 0.9 -> ranks 1, 3, 1 (method "min")
        *[{"dataset": "d", "test": "shortcut", "model": "agg", "measure": m, "quality": "auprc", "value": v}
          for m, v in (("a", 0.9), ("b", 0.5), ("c", 0.9))],
        # violation rates are not ranked
        *[{"dataset": "d", "test": "shortcut", "model": "agg", "measure": m, "quality": "violation_rate", "value": v}
          for m, v in (("a", 0.9), ("b", 0.0), ("c", 0.1))],
        # monotonicity on two models: ranks (1, 2, 3) and (3, 1, 2) -> means a 2, b 1.5, c 2.5
        *[{"dataset": "d", "test": "monotonicity", "model": s, "measure": m, "quality": "monotonicity", "value": v}
          for s, vals in (("s0", (0.9, 0.8, 0.7)), ("s1", (0.1, 0.9, 0.5))) for m, v in zip("abc", vals)],
    ])
    ranks, summary = rb.rank_measures(rec)
    mono = ranks[ranks["test"] == "monotonicity"].set_index("measure")["rank"]
    assert mono.to_dict() == {"a": 2.0, "b": 1.5, "c": 2.5}
    assert summary["median_rank"].to_dict() == {"a": 1.5, "b": 2.25, "c": 1.75}
    assert list(summary.index) == ["a", "c", "b"]


def test_perturbations():
    y = torch.arange(10).repeat(20)
    z = rb.shuffled_labels(y, 0.5, seed=0)
    assert sorted(z.tolist()) == sorted(y.tolist())            # class counts kept
    assert 0 < int((z != y).sum()) <= 100                        # only the shuffled half can change
    assert torch.equal(rb.shuffled_labels(y, 0.0), y)
    x = torch.zeros(10, 1, 40)
    marked = rb.with_marker(x, torch.arange(10), 1.0)
    positions = [int(torch.nonzero(marked[c, 0])[0]) for c in range(10)]
    assert positions == [2 + c * 36 // 9 for c in range(10)]     # the class's place, always (reliability 1)
    images = rb.with_marker(torch.zeros(10, 1, 8, 8), torch.arange(10), 1.0)
    assert all(int(images[c].sum()) == 16 for c in range(10))   # a 2 x 2 patch of 4s
    assert len({tuple(torch.nonzero(images[c, 0])[0].tolist()) for c in range(10)}) == 10


def test_small_setting_end_to_end(tmp_path):
    setting = dataclasses.replace(rb.SMALL, measures=("cka", "jaccard_knn"), n_resamples=99)
    result = rb.run_benchmark(setting, ("mnist1d", "cifar10"), out=tmp_path, log=lambda msg: None)
    rec = result["records"]
    assert set(rec["dataset"]) == {"mnist1d"}                   # cifar10 skipped without a folder
    assert set(rec["measure"]) == {"cka", "cka (cal)", "jaccard_knn", "jaccard_knn (cal)"}
    assert set(rec["test"]) == {"monotonicity", "output_acc_diff", "output_jsd", "output_disagreement",
                                "label_randomization", "shortcut", "augmentation"}
    assert (rec.loc[rec["test"] == "monotonicity", "model"].nunique()) == setting.n_seeds
    groups = rec[rec["quality"].isin(["auprc", "violation_rate"])]["value"]
    assert groups.between(0, 1).all()
    mono = rec[rec["quality"] == "monotonicity"]["value"]
    assert mono.between(-1, 1).all()
    assert len(result["models"]) == setting.n_seeds * (1 + 2 + 2 + 3)
    assert list(result["summary"].columns) == ["median_rank", "mean_rank", "q25", "q75", "n"]
    assert set(result["summary"].index) == set(rec["measure"])
    for name in ("records.csv", "ranks.csv", "summary.csv", "models.csv"):
        assert (tmp_path / name).is_file()
    table = rb.rank_table(result["ranks"], result["summary"])
    assert "median_rank" in table.columns and len(table) == 4
