#!/usr/bin/env python3
"""The PIL + torchvision peer of `cargo bench --bench loader`, on the same JPEG files.

Usage: peer_loader.py DIR   (DIR holds the bench's 384x512 JPEGs; scripts/loader-compare.sh
makes it and runs both sides back to back, so both figures see the same machine load).

Prints one line per configuration, in img/s, with the same names as shared/peers/README.md:
  decode only, one process
  decode + std224 transforms, one process
  torch DataLoader, 2 workers, batch 32, std224
  decode + small transforms, one process
  torch DataLoader, 2 workers, small

std224 = Resize(256) -> RandomResizedCrop(224) -> RandomHorizontalFlip -> ColorJitter(0.2,0.2,0.2)
         -> ToTensor -> Normalize(imagenet)
small  = Resize((128, 96)) -> RandomHorizontalFlip -> ToTensor -> Normalize(imagenet)

Set up (scratch venv, never committed; CI does not need Python):
  python3 -m venv /tmp/mfvenv && /tmp/mfvenv/bin/pip install torch torchvision pillow
"""

import os
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
STD224 = T.Compose(
    [
        T.Resize(256),
        T.RandomResizedCrop(224),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.2, 0.2, 0.2),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ]
)
SMALL = T.Compose([T.Resize((128, 96)), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


class Files(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB")), 0


def best(n, reps, f):
    """Best of `reps` timed runs after one warm-up, in img/s (the machine is shared)."""
    f()
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        rates.append(n / (time.perf_counter() - t))
    return max(rates)


def one_process(paths, transform):
    def run():
        for p in paths:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if transform is not None:
                    transform(im)

    return run


def data_loader(paths, transform):
    loader = DataLoader(Files(paths, transform), batch_size=32, num_workers=2, persistent_workers=True)

    def run():
        for _ in loader:
            pass

    return run


def main():
    root = sys.argv[1]
    paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".jpg"))
    n = len(paths)
    torch.set_num_threads(1)
    print(f"peer (PIL {Image.__version__}, torch {torch.__version__}): {n} JPEGs from {root}")
    rows = [
        ("decode only, one process", one_process(paths, None), 3),
        ("decode + std224 transforms, one process", one_process(paths, STD224), 2),
        ("torch DataLoader, 2 workers, batch 32, std224", data_loader(paths, STD224), 2),
        ("decode + small transforms, one process", one_process(paths, SMALL), 2),
        ("torch DataLoader, 2 workers, small", data_loader(paths, SMALL), 2),
    ]
    for name, run, reps in rows:
        print(f"peer  {name:<46} {best(n, reps, run):7.0f} img/s", flush=True)


if __name__ == "__main__":
    main()
