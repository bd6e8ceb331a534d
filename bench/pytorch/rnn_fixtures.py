#!/usr/bin/env python3
"""Reference cases for a recurrent layer, computed with PyTorch's nn.LSTM, nn.GRU and nn.RNN
(tanh), for fused-rnn's parity tests.

A case is an `nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=...)`
(or the same nn.GRU or nn.RNN) with PyTorch's default initialisation, an input [B, T, I] and
optionally h0/c0 [L*D, B, H] (a GRU or RNN: h0 alone), lengths [B] (int64) and grad_output
[B, T, D*H]. Two safetensors files per case:

  NAME.case.safetensors      the module's state dict under its own keys (weight_ih_l0, ...,
                             bias_hh_l1_reverse), `input`, and `h0`, `c0`, `lengths`,
                             `grad_output` when the case has them; metadata {"config": JSON of
                             input_size, hidden_size, num_layers, bidirectional, and "cell":
                             "gru" or "rnn" for those (no "cell": an LSTM)}.
  NAME.expected.safetensors  `output` [B, T, D*H], `h_n`, `c_n` (an LSTM's) [L*D, B, H] and, with grad_output,
                             the gradients of sum(output * grad_output) (h_n and c_n stay out of
                             the loss): `grad.input`, `grad.h0`, `grad.c0` (with h0/c0) and
                             `grad.<key>` for every state-dict key.

Every tensor is f32. The expected values are computed in float64 from the f32 case tensors, then
rounded to f32. Lengths mean what they mean to PyTorch: pack_padded_sequence(enforce_sorted=False),
the LSTM, pad_packed_sequence(total_length=T); outputs past a row's length are zero, h_n/c_n are
those of its last valid step, and the reverse direction starts at that step.

  write DIR   the fixed cases (CASES below) into DIR, e.g.
      bench/pytorch/.venv/bin/python bench/pytorch/rnn_fixtures.py write crates/fused-rnn/tests/fixtures/torch
  check       random cases, each run as `RUNNER CASE OUT`; OUT must hold the expected keys, e.g.
      bench/pytorch/.venv/bin/python bench/pytorch/rnn_fixtures.py check --cases 50 \\
          --cells lstm,gru,rnn --runner "cargo run -q -p fused-rnn --release --example torch_parity --"
"""

import argparse
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

BASE_SEED = 20240601

# name, cell, input_size, hidden_size, num_layers, bidirectional, B, T, h0/c0, lengths, grad_output
CASES = [
    ("one_layer", "lstm", 5, 7, 1, False, 3, 4, False, None, True),
    ("one_layer_state", "lstm", 4, 6, 1, False, 3, 5, True, None, True),
    ("one_layer_lengths", "lstm", 3, 5, 1, False, 4, 6, False, [6, 2, 4, 1], True),
    ("bidirectional_lengths", "lstm", 4, 9, 1, True, 3, 5, False, [3, 5, 1], True),
    ("two_layers_bidirectional_state_lengths", "lstm", 3, 5, 2, True, 4, 6, True, [6, 3, 5, 2], True),
    ("three_layers_lengths", "lstm", 2, 10, 3, False, 3, 7, False, [7, 4, 2], True),
    ("three_layers_bidirectional_state", "lstm", 3, 3, 3, True, 2, 4, True, None, True),
    ("one_step", "lstm", 4, 5, 2, True, 3, 1, True, None, True),
    ("one_row", "lstm", 3, 7, 2, False, 1, 5, True, [5], True),
    ("forward_only", "lstm", 6, 11, 2, True, 2, 3, True, [2, 3], False),
    ("gru_one_layer", "gru", 5, 7, 1, False, 3, 4, False, None, True),
    ("gru_two_layers_bidirectional_state_lengths", "gru", 3, 5, 2, True, 4, 6, True, [6, 3, 5, 2], True),
    ("gru_three_layers_one_row", "gru", 2, 9, 3, False, 1, 5, True, [4], True),
    ("rnn_one_layer", "rnn", 5, 7, 1, False, 3, 4, False, None, True),
    ("rnn_two_layers_bidirectional_state_lengths", "rnn", 3, 5, 2, True, 4, 6, True, [6, 3, 5, 2], True),
    ("rnn_one_step", "rnn", 4, 10, 2, True, 3, 1, True, None, True),
]

MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def make_module(config, dtype=torch.float32):
    return MODULES[config.get("cell", "lstm")](
        config["input_size"], config["hidden_size"], config["num_layers"],
        batch_first=True, bidirectional=config["bidirectional"], dropout=0.0, dtype=dtype,
    )


def build_case(seed, cell, I, H, L, bidirectional, B, T, state, lengths, grad):
    """(config, tensors) of one case, every random draw after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    config = {"input_size": I, "hidden_size": H, "num_layers": L, "bidirectional": bidirectional}
    if cell != "lstm":
        config["cell"] = cell
    D = 2 if bidirectional else 1
    tensors = {k: v.detach().float().contiguous() for k, v in make_module(config).state_dict().items()}
    tensors["input"] = torch.randn(B, T, I)
    if state:
        tensors["h0"] = 0.5 * torch.randn(L * D, B, H)
        if cell == "lstm":
            tensors["c0"] = 0.5 * torch.randn(L * D, B, H)
    if lengths is not None:
        tensors["lengths"] = torch.tensor(lengths, dtype=torch.int64)
    if grad:
        tensors["grad_output"] = torch.randn(B, T, D * H)
    return config, tensors


def expected(config, tensors, dtype=torch.float64):
    """The expected tensors (f32) of a case, computed in `dtype` from its f32 tensors."""
    module = make_module(config, dtype)
    module.load_state_dict({k: tensors[k].to(dtype) for k in module.state_dict()})
    x = tensors["input"].to(dtype).requires_grad_()
    has_cell = config.get("cell", "lstm") == "lstm"
    state, leaves = None, []
    if "h0" in tensors:
        leaves = [tensors[k].to(dtype).requires_grad_() for k in (("h0", "c0") if has_cell else ("h0",))]
        state = tuple(leaves) if has_cell else leaves[0]
    if "lengths" in tensors:
        packed = pack_padded_sequence(x, tensors["lengths"], batch_first=True, enforce_sorted=False)
        out, final = module(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    else:
        out, final = module(x, state)
    result = {"output": out}
    if has_cell:
        result["h_n"], result["c_n"] = final
    else:
        result["h_n"] = final
    if "grad_output" in tensors:
        (out * tensors["grad_output"].to(dtype)).sum().backward()
        result["grad.input"] = x.grad
        for key, leaf in zip(("grad.h0", "grad.c0"), leaves):
            result[key] = leaf.grad
        for key, p in module.named_parameters():
            result["grad." + key] = p.grad if p.grad is not None else torch.zeros_like(p)
    return {k: v.detach().float().contiguous() for k, v in result.items()}


def save_case(directory, name, config, tensors):
    """Writes NAME.case.safetensors and NAME.expected.safetensors; returns their paths."""
    case_path = os.path.join(directory, name + ".case.safetensors")
    expected_path = os.path.join(directory, name + ".expected.safetensors")
    save_file(tensors, case_path, metadata={"config": json.dumps(config)})
    save_file(expected(config, tensors), expected_path)
    return case_path, expected_path


def describe(config, tensors):
    B, T, _ = tensors["input"].shape
    c = config
    words = [c.get("cell", "lstm"), f"I={c['input_size']} H={c['hidden_size']} L={c['num_layers']}",
             "bi" if c["bidirectional"] else "uni", f"B={B} T={T}"]
    if "h0" in tensors:
        words.append("h0/c0" if "c0" in tensors else "h0")
    if "lengths" in tensors:
        words.append("lengths=" + ",".join(str(n) for n in tensors["lengths"].tolist()))
    if "grad_output" not in tensors:
        words.append("no grad")
    return " ".join(words)


def cmd_write(args):
    os.makedirs(args.dir, exist_ok=True)
    for index, (name, *sizes) in enumerate(CASES):
        config, tensors = build_case(BASE_SEED + index, *sizes)
        paths = save_case(args.dir, name, config, tensors)
        size = sum(os.path.getsize(p) for p in paths)
        print(f"{name:40s} {describe(config, tensors):50s} {size:6d} bytes")


def random_sizes(rng, cells):
    """build_case's arguments after the seed, drawn from rng."""
    cell = rng.choice(cells)
    L, bidirectional = rng.randint(1, 3), rng.random() < 0.5
    B, T, I, H = rng.randint(1, 5), rng.randint(1, 8), rng.randint(1, 6), rng.randint(1, 12)
    lengths = [rng.randint(1, T) for _ in range(B)] if rng.random() < 0.5 else None
    return cell, I, H, L, bidirectional, B, T, rng.random() < 0.5, lengths, rng.random() < 0.8


def cmd_check(args):
    failures = 0
    with tempfile.TemporaryDirectory(prefix="lstm-check-") as tmp:
        for i in range(args.cases):
            seed = args.seed * 100_003 + i
            name = f"random_{i:03d}"
            config, tensors = build_case(seed, *random_sizes(random.Random(seed), args.cells.split(",")))
            case_path, expected_path = save_case(tmp, name, config, tensors)
            out_path = os.path.join(tmp, name + ".out.safetensors")
            command = f"{args.runner} {shlex.quote(case_path)} {shlex.quote(out_path)}"
            run = subprocess.run(command, shell=True, capture_output=True, text=True)
            head = f"{name} seed={seed} {describe(config, tensors)}:"
            if run.returncode != 0 or not os.path.exists(out_path):
                failures += 1
                print(f"{head} FAIL: runner exited {run.returncode}")
                if run.stderr.strip():
                    print(run.stderr.strip())
                continue
            want, got = load_file(expected_path), load_file(out_path)
            worst, worst_key, problems = 0.0, "-", []
            for key, value in want.items():
                if key not in got:
                    problems.append(f"{key} missing")
                elif tuple(got[key].shape) != tuple(value.shape):
                    problems.append(f"{key} shape {list(got[key].shape)} != {list(value.shape)}")
                else:
                    diff = (got[key].double() - value.double()).abs().max().item() if value.numel() else 0.0
                    diff = math.inf if math.isnan(diff) else diff  # a NaN fails
                    if diff > worst or worst_key == "-":
                        worst, worst_key = diff, key
            ok = not problems and worst <= args.tolerance
            failures += not ok
            print(f"{head} {'ok' if ok else 'FAIL'} worst {worst:.2e} ({worst_key})"
                  + "".join("; " + p for p in problems))
    print(f"{args.cases - failures}/{args.cases} cases within {args.tolerance:g}")
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the fixed cases into DIR")
    w.add_argument("dir")
    c = sub.add_parser("check", help="compare a runner with PyTorch on random cases")
    c.add_argument("--runner", required=True, help="shell command; CASE and OUT are appended")
    c.add_argument("--cases", type=int, default=20)
    c.add_argument("--cells", default="lstm", help="comma-separated cells to draw from: lstm,gru,rnn")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    if args.command == "write":
        cmd_write(args)
        return 0
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
