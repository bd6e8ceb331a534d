#!/usr/bin/env python3
"""Checks `mnist-lstm export`'s files from outside Rust: an LSTM, GRU or RNN forward written in
numpy from PyTorch's documented equations and gate order (LSTM: input, forget, cell, output;
GRU: reset, update, new), reading only the safetensors file, must give our logits within 1e-5.

Input: the directory `cargo run -p interop --example export_check -- DIR` wrote (per model a
.safetensors file and a .json with input pixels and our logits). Needs numpy and safetensors
only (no torch): `.ci/run` installs them in a virtual environment.
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def direction(cell, x, w_ih, w_hh, b_ih, b_hh, reverse):
    """One direction of one layer, as torch.nn.LSTM, nn.GRU and nn.RNN (tanh) document it:
    x [batch, steps, in] -> outputs [batch, steps, hidden], each at its own time index."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    out = np.zeros((batch, steps, hidden))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        from_x = x[:, t, :] @ w_ih.T + b_ih
        from_h = h @ w_hh.T + b_hh
        if cell == "lstm":
            i, f, g, o = np.split(from_x + from_h, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        elif cell == "gru":
            x_r, x_z, x_n = np.split(from_x, 3, axis=1)
            h_r, h_z, h_n = np.split(from_h, 3, axis=1)
            r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
            n = np.tanh(x_n + r * h_n)
            h = (1 - z) * n + z * h
        else:
            h = np.tanh(from_x + from_h)
        out[:, t, :] = h
    return out


def forward(weights, x, cell, num_layers, bidirectional):
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    for layer in range(num_layers):
        outputs = []
        for suffix in ([""] + (["_reverse"] if bidirectional else [])):
            end = f"l{layer}{suffix}"
            outputs.append(direction(
                cell, x, w[f"rnn.weight_ih_{end}"], w[f"rnn.weight_hh_{end}"],
                w[f"rnn.bias_ih_{end}"], w[f"rnn.bias_hh_{end}"], suffix == "_reverse"))
        x = np.concatenate(outputs, axis=2)
    return x[:, -1, :] @ w["out.weight"].T + w["out.bias"]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    names = sorted(n[:-5] for n in os.listdir(directory) if n.endswith(".json"))
    if not names:
        sys.exit(f"no exported models in {directory}")
    worst_all = 0.0
    for name in names:
        with open(os.path.join(directory, name + ".json")) as f:
            expected = json.load(f)
        weights = load_file(os.path.join(directory, name + ".safetensors"))
        pixels = np.array(expected["pixels"], dtype=np.float64).reshape(-1, 28, 28) / 255.0
        ours = np.array(expected["logits"], dtype=np.float64).reshape(pixels.shape[0], -1)
        theirs = forward(weights, pixels, expected.get("cell", "lstm"), expected["num_layers"],
                         expected["bidirectional"])
        worst = float(np.abs(ours - theirs).max())
        worst_all = max(worst_all, worst)
        print(f"{name}: {len(weights)} tensors, largest logit difference {worst:.2e}")
        if worst > 1e-5:
            sys.exit(f"{name}: the numpy forward differs from our logits by {worst:.2e} (> 1e-5)")
    print(f"numpy forward on the exported files matches our logits (worst {worst_all:.2e})")


if __name__ == "__main__":
    main()
