#!/usr/bin/env python3
"""The tutorial in PyTorch, measured the way `mnist-lstm bench` measures ours.

nn.LSTM(28, 64) + Linear(64, 10) on the last time step, Adam 0.01, batch 64, pixels / 255 (no
mean/std: configs/default.toml has normalize = false), PyTorch's default initialisation. It reads
the same four IDX .gz files (no torchvision, no download) and prints one JSON object whose fields
are those of `mnist-lstm bench --json` (crates/training/src/bench.rs), so `cargo xtask bench
--vs-pytorch` can put the two side by side.

Phases, each as in bench.rs:
  train:  `warmup` Adam steps, then `steps` timed ones, batch 64, over the training images in file
          order (wrapping around);
  infer:  one warm-up batch, then the first `infer_images` test images in batches of 1000,
          timed, the argmax read back;
  epoch:  (unless --no-epoch) the tutorial's epoch from a fresh model seeded with --seed: 938 shuffled
          steps, every 50 steps the loss and the accuracy on the first 2,000 test images, then
          one pass over the 10,000 test images in batches of 1000 (burn-train's validation pass);
          its test accuracy is reported.

With --time-to-accuracy A (e.g. 0.97) it measures none of those but the tutorial's recipe the way a
user trains it until the 10k test set reaches A: a fresh model seeded with --seed, epoch after
epoch of 938 shuffled steps (no step probes), the 10,000 test images classified after each epoch
(batches of 1000), for at most --max-epochs epochs. The clock starts before the first step (data
already loaded, model built) and its reading at the end of each epoch's evaluation is that epoch's
`elapsed_s`, as `elapsed_s` of the `valid` rows of our metrics.csv; `seconds_to_accuracy` is the
first epoch's at or above A (null if none is). `cargo xtask bench --time-to-97` runs it.

With --recipe pixels the model and optimiser are those of configs/pixels.toml instead: each image
784 steps of one pixel, (pixel / 255 - 0.1307) / 0.3081, nn.LSTM(1, 128) with 1 added to the
forget gates' bias_ih (ours starts from chrono biases: the same cost), Adam 0.002, every
parameter's gradient clipped to norm 1 on its own (as burn's per-parameter clipping), batch 64
(`cargo xtask bench cpu --sequence pixels`). Permuted MNIST reads the same shapes, so it costs
the same. --cell gru or rnn puts nn.GRU or nn.RNN (tanh) in the LSTM's place (no forget-gate
offset), as `--set model.cell=...` does for ours.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import torch
from torch import nn


def read_idx(path):
    """The array of an IDX file (raw or .gz) as a uint8 tensor of its dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    count = 1
    for d in dims:
        count *= d
    if len(body) != count:
        raise ValueError(f"{path}: {len(body)} bytes of data, the header says {count}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{stem}(.gz) not found in {data_dir}")


# What each recipe changes: (steps, features per step, hidden units, learning rate, forget-gate
# bias, per-parameter gradient norm clip, (mean, std) or None).
RECIPES = {
    "tutorial": (28, 28, 64, 0.01, 0.0, None, None),
    "pixels": (784, 1, 128, 0.002, 1.0, 1.0, (0.1307, 0.3081)),
}


def load(data_dir, recipe="tutorial"):
    steps, features, _, _, _, _, normalization = RECIPES[recipe]

    def images(stem):
        scaled = read_idx(find(data_dir, stem)).float().div_(255.0)
        if normalization is not None:
            scaled = (scaled - normalization[0]) / normalization[1]
        return scaled.reshape(len(scaled), steps, features).contiguous()

    def labels(stem):
        return read_idx(find(data_dir, stem)).long()

    return (
        images("train-images-idx3-ubyte"),
        labels("train-labels-idx1-ubyte"),
        images("t10k-images-idx3-ubyte"),
        labels("t10k-labels-idx1-ubyte"),
    )


CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class TutorialLstm(nn.Module):
    def __init__(self, features=28, hidden=64, forget_bias=0.0, cell="lstm"):
        super().__init__()
        self.lstm = CELLS[cell](features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)
        if forget_bias and cell == "lstm":
            with torch.no_grad():
                self.lstm.bias_ih_l0[hidden : 2 * hidden] += forget_bias

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


def peak_rss_bytes():
    """VmHWM, the peak resident set of this process, as bench.rs reads it for ours."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def accuracy(model, images, labels, batch):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            correct += (model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum().item()
    model.train()
    return correct / max(1, len(images))


def tutorial_recipe(seed, recipe="tutorial", cell="lstm"):
    """The recipe's model and optimiser (the tutorial's: Adam 0.01), initialised from `seed`."""
    _, features, hidden, lr, forget_bias, _, _ = RECIPES[recipe]
    torch.manual_seed(seed)
    model = TutorialLstm(features, hidden, forget_bias, cell)
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def clip(model, recipe):
    """The recipe's gradient clipping: each parameter's gradient to the norm on its own."""
    norm = RECIPES[recipe][5]
    if norm is not None:
        for parameter in model.parameters():
            torch.nn.utils.clip_grad_norm_(parameter, norm)


def train_epoch(model, opt, loss_fn, train_x, train_y, bs, after_step=None):
    """One shuffled pass over the training images in batches of `bs`; calls
    `after_step(step, loss)` after each step (counted from 1)."""
    order = torch.randperm(len(train_x))
    for s, i in enumerate(range(0, len(train_x), bs), start=1):
        idx = order[i : i + bs]
        opt.zero_grad()
        loss = loss_fn(model(train_x[idx]), train_y[idx])
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(s, loss)


def time_to_accuracy(args, train_x, train_y, test_x, test_y):
    """The tutorial recipe, epoch after epoch, until the test accuracy reaches args.time_to_accuracy."""
    bs = args.batch_size
    loss_fn = nn.CrossEntropyLoss()
    model, opt = tutorial_recipe(args.seed)
    epochs = []
    reached = None
    started = time.perf_counter()
    for epoch in range(1, args.max_epochs + 1):
        train_epoch(model, opt, loss_fn, train_x, train_y, bs)
        acc = accuracy(model, test_x, test_y, 1000)
        elapsed = time.perf_counter() - started
        epochs.append({"epoch": epoch, "test_accuracy": acc, "elapsed_s": elapsed})
        print(f"epoch {epoch}: test accuracy {100 * acc:.2f}% at {elapsed:.1f} s", file=sys.stderr)
        if acc >= args.time_to_accuracy:
            reached = {"epoch": epoch, "seconds": elapsed}
            break
    return {
        "implementation": "pytorch",
        "backend": "pytorch",
        "version": torch.__version__,
        "recipe": "tutorial: nn.LSTM(28, 64) + Linear(64, 10), Adam 0.01, batch 64, pixels / 255",
        "threads": args.threads,
        "seed": args.seed,
        "batch_size": bs,
        "target_accuracy": args.time_to_accuracy,
        "max_epochs": args.max_epochs,
        "epochs": epochs,
        "epochs_to_accuracy": None if reached is None else reached["epoch"],
        "seconds_to_accuracy": None if reached is None else reached["seconds"],
        "data_dir": os.path.abspath(args.data_dir),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MNIST_DIR"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--infer-batch-size", type=int, default=1000)
    p.add_argument("--infer-images", type=int, default=10000)
    p.add_argument("--no-epoch", action="store_true")
    p.add_argument("--json", help="also write the JSON here")
    p.add_argument(
        "--time-to-accuracy",
        type=float,
        metavar="A",
        help="only time the tutorial's recipe, epoch after epoch, until the test accuracy reaches A",
    )
    p.add_argument("--max-epochs", type=int, default=10, help="with --time-to-accuracy")
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="tutorial",
        help="the model and optimiser: the tutorial's, or configs/pixels.toml's",
    )
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm", help="the recurrent module")
    args = p.parse_args()
    if not args.data_dir:
        sys.exit("error: give --data-dir or set MNIST_DIR")
    if args.time_to_accuracy is not None and not 0 < args.time_to_accuracy <= 1:
        sys.exit("error: --time-to-accuracy must be in (0, 1]")
    if args.max_epochs < 1:
        sys.exit("error: --max-epochs must be at least 1")
    if args.recipe != "tutorial" and (args.time_to_accuracy is not None or not args.no_epoch):
        sys.exit("error: --recipe pixels measures steps and inference only: give --no-epoch")

    # Ours runs on RAYON_NUM_THREADS=threads; intra-op threads are PyTorch's equivalent, and one
    # inter-op thread keeps it from using more cores than we do.
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    train_x, train_y, test_x, test_y = load(args.data_dir, args.recipe)
    if args.time_to_accuracy is not None:
        write_report(time_to_accuracy(args, train_x, train_y, test_x, test_y), args.json)
        return
    n = len(train_x)
    bs = args.batch_size
    loss_fn = nn.CrossEntropyLoss()

    # Training throughput.
    model, opt = tutorial_recipe(args.seed, args.recipe, args.cell)

    def step(i):
        start = (i * bs) % max(1, n - bs + 1)
        x, y = train_x[start : start + bs], train_y[start : start + bs]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        clip(model, args.recipe)
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    started = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    loss.item()
    train_seconds = time.perf_counter() - started

    # Inference throughput.
    infer_x = test_x[: args.infer_images]
    ib = args.infer_batch_size
    model.eval()
    with torch.no_grad():
        model(infer_x[:ib]).argmax(1).tolist()
        started = time.perf_counter()
        for i in range(0, len(infer_x), ib):
            model(infer_x[i : i + ib]).argmax(1).tolist()
        infer_seconds = time.perf_counter() - started
    model.train()

    # The tutorial's epoch.
    epoch_seconds = test_accuracy = None
    if not args.no_epoch:
        model, opt = tutorial_recipe(args.seed)
        probe_x, probe_y = test_x[:2000], test_y[:2000]

        def probe(s, loss):
            # The step lines: every 50 steps, the loss and the accuracy on 2,000 test images.
            if s % 50 == 0:
                loss.item()
                accuracy(model, probe_x, probe_y, 1000)

        started = time.perf_counter()
        train_epoch(model, opt, loss_fn, train_x, train_y, bs, probe)
        test_accuracy = accuracy(model, test_x, test_y, 1000)
        epoch_seconds = time.perf_counter() - started

    report = {
        "implementation": "pytorch",
        "backend": "pytorch",
        "version": torch.__version__,
        "recipe": args.recipe,
        "cell": args.cell,
        "threads": args.threads,
        "seed": args.seed,
        "batch_size": bs,
        "train_warmup_steps": args.warmup,
        "train_steps": args.steps,
        "train_seconds": train_seconds,
        "train_images_per_second": args.steps * bs / train_seconds,
        "infer_batch_size": ib,
        "infer_images": len(infer_x),
        "infer_seconds": infer_seconds,
        "infer_images_per_second": len(infer_x) / infer_seconds,
        "epoch_train_images": None if args.no_epoch else n,
        "epoch_seconds": epoch_seconds,
        "epoch_images_per_second": None if epoch_seconds is None else n / epoch_seconds,
        "test_images": None if args.no_epoch else len(test_x),
        "test_accuracy": test_accuracy,
        "peak_rss_bytes": peak_rss_bytes(),
        "data_dir": os.path.abspath(args.data_dir),
    }
    write_report(report, args.json)


def write_report(report, path):
    """Prints the JSON report, and writes it to `path` when given."""
    text = json.dumps(report, indent=2)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
