"""PyTorch's nn.LSTM on one of fused-rnn's benchmark shapes: training steps (forward and
backward of the mean output) and inference, timed; prints one JSON line of sequences per second.

Run by `cargo run -p fused-rnn --release --features flex --example layer_speed -- --pytorch PY`,
which alternates it with the Rust layer round by round; alone:

    bench/pytorch/.venv/bin/python bench/pytorch/layer_speed.py --batch 64 --steps 28 \
        --input 28 --hidden 64 --layers 1 --train-steps 10 --infer-steps 10
"""

import argparse
import json
import time

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("batch", "steps", "input", "hidden", "layers", "train-steps", "infer-steps"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--last", action="store_true",
                        help="the loss and the inference read the last step's output only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
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


if __name__ == "__main__":
    main()
