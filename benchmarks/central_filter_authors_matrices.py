"""Central-Filter selection on the authors' own ResNet-56 filter-similarity matrices.

Duan et al.'s repository (github.com/8ubpshLR23/Central-Filter) ships the similarity matrix of
every ResNet-56 conv (``rank_conv/resnet_56/dis_mtx{i}.npy``) and the per-conv compression rates
of its README (``[0.]+[0.2,0.]*2+[0.6,0.]*7+[0.7,0.]*9+[0.8,0.]*9``). For each of the 27 convs
with a rate > 0, this runs ``repgraph.central_filters(S, ratio)`` and reports how many filters it
prunes against ``ceil(C·ratio)``, which the authors' ``rank.py`` prunes in every layer. Nothing is
downloaded: point ``--repo`` at a local clone.

    python benchmarks/central_filter_authors_matrices.py --repo /path/to/Central-Filter
"""
import argparse
import math
from pathlib import Path

import numpy as np

import repgraph as rg

RATES = [0.] + [0.2, 0.] * 2 + [0.6, 0.] * 7 + [0.7, 0.] * 9 + [0.8, 0.] * 9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a local clone of 8ubpshLR23/Central-Filter")
    args = parser.parse_args()
    folder = Path(args.repo) / "rank_conv" / "resnet_56"
    exact, pruned_fraction = 0, []
    for conv, ratio in enumerate(RATES):
        if ratio == 0:
            continue
        S = np.load(folder / f"dis_mtx{conv}.npy")
        selection = rg.central_filters(S, ratio=ratio)
        wanted = math.ceil(len(S) * ratio)
        exact += len(selection.pruned) == wanted
        pruned_fraction.append(len(selection.pruned) / wanted)
        print(f"conv {conv:2d}: C = {len(S)}, ratio {ratio}: pruned {len(selection.pruned)} of ceil(C·ratio) = {wanted}")
    print(f"{exact} of {len(pruned_fraction)} convs prune exactly ceil(C·ratio); "
          f"mean fraction of the requested count {np.mean(pruned_fraction):.2f}")


if __name__ == "__main__":
    main()
