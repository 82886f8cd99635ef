#!/usr/bin/env python3
"""PyTorch peer for Mercury's training-throughput benchmark.

Trains the same reference CNN (conv5x5 1->32, ReLU, maxpool2, conv5x5 32->64, ReLU, maxpool2,
Linear 1024->128, ReLU, Linear 128->10) with Adam on batches of Fashion-MNIST-shaped inputs and
prints one JSON line: {"peer": "torch", "train_samples_per_s": ..., "score_samples_per_s": ...}.
Runs only where torch is installed (Debian: python3-torch); exits 3 with a message otherwise.
"""
import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("torch_cnn.py: PyTorch is not installed (apt-get install python3-torch)", file=sys.stderr)
    sys.exit(3)


def make_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--score-batch", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = make_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.CrossEntropyLoss(reduction="none")

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).mean().backward()
        opt.step()

    def timed(fn, samples):
        for _ in range(3):
            fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            fn()
            n += 1
        return n * samples / (time.perf_counter() - t0)

    train_sps = timed(train_step, args.batch)
    xs = torch.randn(args.score_batch, 1, 28, 28)
    ys = torch.randint(0, 10, (args.score_batch,))
    model.eval()

    def score_step():
        with torch.no_grad():
            loss_fn(model(xs), ys)

    score_sps = timed(score_step, args.score_batch)
    print(json.dumps({"peer": "torch", "torch_version": torch.__version__, "threads": args.threads,
                      "batch": args.batch, "train_samples_per_s": train_sps,
                      "score_samples_per_s": score_sps}))


if __name__ == "__main__":
    main()
