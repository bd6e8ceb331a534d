#!/usr/bin/env python3
"""Makes crates/interop/tests/fixtures/pytorch-tutorial.{pt,json} (and pytorch-tutorial-module.pt): the
tutorial's model trained for one epoch with the tutorial's recipe in real PyTorch, for `mnist-lstm
import`'s tests.

The model is the tutorial's module as its users have it: `nn.LSTM(28, 64, batch_first=True)`
named `rnn`, `nn.Linear(64, 10)` named `out`, the last time step's output classified. Trained
with tutorial.py's recipe (Adam 0.01, batch 64, pixels / 255, one shuffled epoch, seed 42), saved
with `torch.save(model.state_dict(), ...)`, and once more whole with `torch.save(model, ...)`, as
the tutorial does, which import refuses. The JSON holds what the import test checks against:
the number of the 10,000 test images PyTorch classifies right, the first 20 test images and
PyTorch's logits for them (float32, as computed), and the torch version.

Run once, by hand (torch is not needed in CI):
    bench/pytorch/.venv/bin/python bench/pytorch/make_import_fixture.py --data-dir $MNIST_DIR
"""

import argparse
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tutorial import load, train_epoch  # noqa: E402

FIXTURES = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "interop", "tests", "fixtures"
)


class MyModel(nn.Module):
    """The tutorial's module: its names (`rnn`, `out`) are the state_dict's keys."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(28, 64, batch_first=True)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        r_out, _ = self.rnn(x)
        return self.out(r_out[:, -1, :])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DIR"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=FIXTURES)
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("give --data-dir or set MNIST_DIR")
    torch.set_num_threads(os.cpu_count() or 1)
    train_x, train_y, test_x, test_y = load(args.data_dir)

    torch.manual_seed(args.seed)
    model = MyModel()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train_epoch(model, opt, nn.CrossEntropyLoss(), train_x, train_y, 64)

    model.eval()
    with torch.no_grad():
        correct = sum(
            (model(test_x[i : i + 1000]).argmax(1) == test_y[i : i + 1000]).sum().item()
            for i in range(0, len(test_x), 1000)
        )
        first = test_x[:20]
        logits = model(first)
    os.makedirs(args.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.out, "pytorch-tutorial.pt"))
    # What the tutorial itself writes (the whole module), which import must refuse clearly.
    torch.save(model, os.path.join(args.out, "pytorch-tutorial-module.pt"))
    fixture = {
        "recipe": "tutorial MyModel (rnn: nn.LSTM(28, 64), out: nn.Linear(64, 10)), Adam 0.01, "
        f"batch 64, pixels / 255, one epoch, seed {args.seed}",
        "torch_version": torch.__version__,
        "test_images": len(test_x),
        "test_correct": int(correct),
        "first_images": (first * 255).round().to(torch.uint8).reshape(20, 784).tolist(),
        "first_logits": logits.tolist(),
    }
    with open(os.path.join(args.out, "pytorch-tutorial.json"), "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"test accuracy {correct / len(test_x):.4f} ({correct} / {len(test_x)}); "
          f"written to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
