#!/usr/bin/env python3
"""Loads the files `cargo run -p interop --release --example export_check -- DIR` wrote into
the tutorial's module in real PyTorch (`load_state_dict(safetensors.torch.load_file(...))`,
strict) and compares its logits with ours. CI runs the numpy version
(crates/interop/check/numpy_forward.py); this one needs torch (bench/pytorch/.venv):

    bench/pytorch/.venv/bin/python bench/pytorch/check_export_in_torch.py DIR
"""

import json
import os
import sys

import numpy as np
import safetensors.torch
import torch
from torch import nn


class MyModel(nn.Module):
    """The tutorial's module, sized like the exported model."""

    def __init__(self, cell, hidden, layers, bidirectional):
        super().__init__()
        module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = module(28, hidden, num_layers=layers, batch_first=True,
                          bidirectional=bidirectional)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), 10)

    def forward(self, x):
        r_out, _ = self.rnn(x)
        return self.out(r_out[:, -1, :])


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    for name in sorted(n[:-5] for n in os.listdir(directory) if n.endswith(".json")):
        with open(os.path.join(directory, name + ".json")) as f:
            expected = json.load(f)
        model = MyModel(expected.get("cell", "lstm"), expected["hidden_size"], expected["num_layers"], expected["bidirectional"])
        model.load_state_dict(
            safetensors.torch.load_file(os.path.join(directory, name + ".safetensors")))
        x = torch.tensor(expected["pixels"], dtype=torch.float32).reshape(-1, 28, 28) / 255
        with torch.no_grad():
            logits = model(x).numpy().reshape(-1)
        worst = float(np.abs(logits - np.array(expected["logits"])).max())
        print(f"{name}: torch {torch.__version__} against ours, largest difference {worst:.2e}")
        if worst > 1e-5:
            sys.exit(f"{name}: differs by more than 1e-5")


if __name__ == "__main__":
    main()
