"""PyTorch's nn.LSTM on one of fused-rnn's benchmark shapes: training steps (forward and
backward of the mean output) and inference, timed; prints one JSON line of sequences per second.

Run by `cargo run -p fused-rnn --release --features flex --example layer_speed -- --pytorch PY`,
which alternates it with the Rust layer round by round; alone:

    bench/pytorch/.venv/bin/python bench/pytorch/layer_speed.py --batch 64 --steps 28 \
        --input 28 --hidden 64 --layers 1 --train-steps 10 --infer-steps 10

`--matmul-peak N` times an N x N matrix product instead (the best of five) and prints
`{"matmul_gflops": ...}`: the arithmetic rate the machine's threads reach at best.
"""

import argparse
import json
import time

import torch


# The LSTM's shape and the timed steps: required unless --matmul-peak is given.
SHAPE_ARGUMENTS = ("batch", "steps", "input", "hidden", "layers", "train-steps", "infer-steps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matmul-peak", type=int, metavar="N",
                        help="time an N x N matrix product instead of the LSTM")
    for name in SHAPE_ARGUMENTS:
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--last", action="store_true",
                        help="the loss and the inference read the last step's output only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.matmul_peak:
        print(json.dumps({"matmul_gflops": matmul_gflops(args.matmul_peak)}))
        return
    missing = [name for name in SHAPE_ARGUMENTS if getattr(args, name.replace("-", "_")) is None]
    if missing:
        parser.error("required: " + ", ".join("--" + name for name in missing))
    lstm = torch.nn.LSTM(args.input, args.hidden, args.layers, batch_first=True,
                         bidirectional=args.bidirectional)
    x = torch.rand(args.batch, args.steps, args.input)

    def train_step():
        lstm.zero_grad()
        output, _ = lstm(x)
        (output[:, -1] if args.last else output).mean().backward()

    train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.train_steps):
        train_step()
    train = args.batch * args.train_steps / (time.perf_counter() - start)

    with torch.inference_mode():
        lstm(x)
        start = time.perf_counter()
        for _ in range(args.infer_steps):
            output = lstm(x)[0]
            (output[:, -1] if args.last else output).sum().item()
        infer = args.batch * args.infer_steps / (time.perf_counter() - start)
    print(json.dumps({"train_per_s": train, "infer_per_s": infer}))


def matmul_gflops(side):
    """The best of five timings of a side x side matrix product, in GFLOP/s."""
    a, b = torch.rand(side, side), torch.rand(side, side)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * side ** 3 / best / 1e9


if __name__ == "__main__":
    main()
