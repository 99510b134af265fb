"""The named layer selections of ``capture_activations(layers=...)``: a plain table, importable
without torch so the command line can offer them as choices."""

PRESETS = {
    "blocks": "residual blocks; a transformer's stack of repeated blocks; a plain stack's shape-keeping "
              "conv+BN+ReLU groups, flat or nn.Sequential (else the top-level stages)",
    "convs": "every convolution",
    "relus": "every ReLU module",
    "modularity": "Lu et al. (ECCV 2022): stem conv + every residual block; every conv for VGG; "
                  "a transformer's blocks",
}
