#!/usr/bin/env python3
"""Makes the PyTorch gradient-parity fixture for maskflow's training step (issue 18).

From the committed timm B0 fixture (tests/fixtures/timm/efficientnet_b0_18.safetensors) and its
two 64x64 inputs, one batch of 8 (the two images, then mirrored left-right, upside down, both:
the order of `fixture_batch` in the tests), labels (5 i) mod 18, plain cross-entropy (mean),
BatchNorm in training mode, no dropout or drop-path. Writes, under tests/fixtures/timm/:
  efficientnet_b0_18_grads.safetensors  the gradients of a sample of parameters (GRADS)
  efficientnet_b0_18_sgd.safetensors    the sample after one SGD step (momentum 0.9,
                                        weight decay 1e-4, lr 1e-2), running statistics too
  efficientnet_b0_18_adamw.safetensors  the same after one AdamW step (betas 0.9/0.999,
                                        eps 1e-5, weight decay 0.01, lr 1e-4)
each with the loss before the step in its metadata ("loss"). Names are timm's; maskflow reads
them through its timm loader (`model::timm::read_timm_tensors`).

eps is 1e-5, not PyTorch's 1e-8: Adam's first update is lr * g / (|g| + eps), a full +-lr step
wherever |g| >> eps, so gradients that are rounding noise (about 1e-7 in the deep blocks,
where the fixture's randomised BatchNorm makes the loss large) would move by +-lr with the
noise's sign, and two correct implementations would differ there by the whole step.

Set up (scratch venv, never committed):
  python3 -m venv /tmp/mfvenv && /tmp/mfvenv/bin/pip install torch timm safetensors
  /tmp/mfvenv/bin/python scripts/make_grad_fixture.py
Made with torch 2.15.0 and timm 1.0.31.
"""

import copy
import os

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "timm")

# A sample across the network: the stem, a depthwise and an SE of the first block, an expand
# 1x1 and its BatchNorm in stage 3, a 5x5 depthwise in stage 5, an SE expand in stage 6, the
# projection BatchNorm of the last block, the head BatchNorm and the classifier. Every kind of
# parameter the fused kernels touch; small enough to commit (the whole model is 16 MB).
PARAMS = [
    "conv_stem.weight",
    "bn1.weight",
    "bn1.bias",
    "blocks.0.0.conv_dw.weight",
    "blocks.0.0.se.conv_reduce.weight",
    "blocks.0.0.se.conv_reduce.bias",
    "blocks.2.1.conv_pw.weight",
    "blocks.2.1.bn1.weight",
    "blocks.2.1.bn1.bias",
    "blocks.4.2.conv_dw.weight",
    "blocks.5.1.se.conv_expand.weight",
    "blocks.6.0.bn3.weight",
    "blocks.6.0.bn3.bias",
    "bn2.weight",
    "bn2.bias",
    "classifier.weight",
    "classifier.bias",
]
# Gradients of all of PARAMS but one: the last block's projection BatchNorm bias has a zero
# gradient in exact arithmetic (conv_head is 1x1, and the head BatchNorm, in training mode,
# subtracts each channel's batch mean, so a per-channel constant added before it changes
# nothing), and the ~1e-7 rounding noise both frameworks give it has no relative scale.
GRADS = [p for p in PARAMS if p != "blocks.6.0.bn3.bias"]
RUNNING = [
    "bn1.running_mean",
    "bn1.running_var",
    "blocks.2.1.bn1.running_mean",
    "blocks.2.1.bn1.running_var",
    "blocks.6.0.bn3.running_mean",
    "blocks.6.0.bn3.running_var",
    "bn2.running_mean",
    "bn2.running_var",
]


def batch():
    x = load_file(os.path.join(FIXTURES, "efficientnet_b0_18_io.safetensors"))["input"]
    images = torch.cat([x, x.flip(3), x.flip(2), x.flip(2, 3)])
    labels = torch.tensor([(5 * i) % 18 for i in range(images.shape[0])])
    return images, labels


def step(model, make_optimizer, images, labels):
    model = copy.deepcopy(model)
    model.train()
    optimizer = make_optimizer(model.parameters())
    optimizer.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    named = dict(model.named_parameters())
    grads = {n: named[n].grad.detach().clone().contiguous() for n in GRADS}
    optimizer.step()
    state = model.state_dict()
    after = {n: state[n].detach().clone().contiguous() for n in PARAMS + RUNNING}
    return float(loss.detach()), grads, after


def main() -> None:
    torch.use_deterministic_algorithms(True)
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=18, drop_rate=0.0, drop_path_rate=0.0)
    model.load_state_dict(load_file(os.path.join(FIXTURES, "efficientnet_b0_18.safetensors")), strict=True)
    images, labels = batch()
    sgd = lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=1e-4)
    adamw = lambda p: torch.optim.AdamW(p, lr=1e-4, betas=(0.9, 0.999), eps=1e-5, weight_decay=0.01)
    loss, grads, after_sgd = step(model, sgd, images, labels)
    loss_adamw, _, after_adamw = step(model, adamw, images, labels)
    assert loss == loss_adamw
    meta = {"format": "pt", "loss": repr(loss), "torch": torch.__version__, "timm": timm.__version__}
    save_file(grads, os.path.join(FIXTURES, "efficientnet_b0_18_grads.safetensors"), metadata=meta)
    save_file(after_sgd, os.path.join(FIXTURES, "efficientnet_b0_18_sgd.safetensors"), metadata=meta)
    save_file(after_adamw, os.path.join(FIXTURES, "efficientnet_b0_18_adamw.safetensors"), metadata=meta)
    print("loss", loss, "torch", torch.__version__, "timm", timm.__version__)


if __name__ == "__main__":
    main()
