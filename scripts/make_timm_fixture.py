#!/usr/bin/env python3
"""Makes the timm reference fixture for maskflow's weight loader (tests/model_timm.rs).

Writes, under tests/fixtures/timm/:
  efficientnet_b0_18.safetensors     timm efficientnet_b0 state_dict, 18 classes
  efficientnet_b0_18_io.safetensors  {"input": [2,3,64,64] f32, "logits": [2,18] f32}

A freshly initialised timm model is a weak reference (BatchNorm is nearly the identity, SE
gates sit near 0.5, logits are ~1e-5), so BatchNorm running statistics, BatchNorm affine
parameters and all biases are randomised before saving. Logits are computed in eval mode.

Set up (scratch venv, never committed):
  python3 -m venv /tmp/mfvenv && /tmp/mfvenv/bin/pip install torch timm safetensors
  /tmp/mfvenv/bin/python scripts/make_timm_fixture.py
Made with torch 2.15.0 and timm 1.0.31.
"""

import os

import timm
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "timm")


def main() -> None:
    torch.manual_seed(20240518)
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=18)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c) * 0.2)
                module.running_var.copy_(torch.rand(c) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(c) * 1.0 + 0.5)
                module.bias.copy_(torch.randn(c) * 0.2)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                if module.bias is not None:
                    module.bias.copy_(torch.randn_like(module.bias) * 0.2)
        # Make the classifier loud enough that a wrong layer shows up far above 1e-4.
        model.classifier.weight.mul_(10.0)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
    os.makedirs(OUT, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(OUT, "efficientnet_b0_18.safetensors"), metadata={"format": "pt"})
    save_file(
        {"input": x.contiguous(), "logits": logits.contiguous()},
        os.path.join(OUT, "efficientnet_b0_18_io.safetensors"),
        metadata={"format": "pt"},
    )
    print("logits std", float(logits.std()), "max |logit|", float(logits.abs().max()))


if __name__ == "__main__":
    main()
