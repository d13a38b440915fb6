#!/usr/bin/env python3
"""The PyTorch + timm peer of `cargo bench --bench train_step`: one training step (forward,
backward, AdamW) and eval-mode inference of efficientnet_b0 (18 classes), batch 16, 2 threads,
at the same sizes. Run it right after the Rust bench so both see the same machine load.

Usage: peer_train_step.py [SIZES]   (default "128x96,224x224", HxW)
Env, as the Rust bench reads them: BENCH_ARCH (default efficientnet_b0), BENCH_BATCH (default 16),
BENCH_STEPS (default 3).
Set up (scratch venv, never committed): python3 -m venv /tmp/mfvenv && /tmp/mfvenv/bin/pip install torch timm
"""

import os
import sys
import time

import timm
import torch


def main():
    torch.set_num_threads(2)
    sizes = sys.argv[1] if len(sys.argv) > 1 else "128x96,224x224"
    arch = os.environ.get("BENCH_ARCH", "efficientnet_b0")
    steps = int(os.environ.get("BENCH_STEPS", "3"))
    batch = int(os.environ.get("BENCH_BATCH", "16"))
    for size in sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        torch.manual_seed(1)
        model = timm.create_model(arch, pretrained=False, num_classes=18)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(batch, 3, h, w)
        y = torch.arange(batch) % 18
        model.train()
        for step in range(steps + 1):
            if step == 1:
                t = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        train = batch * steps / (time.perf_counter() - t)
        model.eval()
        with torch.no_grad():
            model(x)
            t = time.perf_counter()
            for _ in range(steps):
                model(x)
            infer = batch * steps / (time.perf_counter() - t)
        print(f"pytorch  {arch} b{batch} {h}x{w}: train {train:7.2f} img/s, infer {infer:7.2f} img/s", flush=True)


if __name__ == "__main__":
    main()
