"""Made tests/data/format1_cells.bnn and format1_cells.npz with bnn-nas at 04a0e54 (before
grouped convs were packed): a small cell network with a grouped + shuffled conv (left in
torch by that version), conv_bn and bn_conv units, a factorized reduce."""
import sys
from pathlib import Path

import numpy as np
import torch

from bnn_nas.config import ModelConfig
from bnn_nas.export import Architecture, InputSpec, export_network, load_packed
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.space.search_space import search_space_from_dict

out = Path(sys.argv[1])
space = search_space_from_dict(
    {"steps": 2, "ops": [
        "skip_connect", "max_pool_3x3", "xnor_conv_3x3",
        {"name": "bireal_conv_3x3", "groups": 2, "shuffle": True},
        {"name": "xnor_conv_3x3_skip_connect", "reduce": "factorized"}],
     "network": {"cells": 3, "channels": 8, "stem_multiplier": 2, "preprocess": "xnor"}},
    "format-1 fixture",
)
genotype = parse_genotype(
    "Genotype(normal=[('xnor_conv_3x3', 0), ('bireal_conv_3x3', 1), "
    "('xnor_conv_3x3_skip_connect', 0), ('skip_connect', 2)], normal_concat=[2, 3], "
    "reduce=[('xnor_conv_3x3_skip_connect', 0), ('bireal_conv_3x3', 1), "
    "('max_pool_3x3', 0), ('xnor_conv_3x3', 2)], reduce_concat=[2, 3])"
)
arch = Architecture(ModelConfig(), 10, space, genotype)
torch.manual_seed(0)
model = arch.build()
gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            if m.weight is not None:
                m.weight.normal_(1, 0.5, generator=gen)
                m.bias.normal_(0, 0.5, generator=gen)
model.eval()
spec = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))), 32, 32)
summary = export_network(model, arch, spec, out / "format1_cells.bnn")
print(summary.describe())
x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
engine = load_packed(out / "format1_cells.bnn")
with torch.no_grad():
    logits = engine.logits(torch.from_numpy(x)).numpy()
    torch_logits = model(torch.from_numpy(x)).numpy()
print("engine vs torch float32 (ties differ):", np.abs(logits - torch_logits).max())
np.savez(out / "format1_cells.npz", x=x, logits=logits)
