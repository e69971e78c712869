"""A small PyTorch classifier with a shared-channel conv stem on synthetic 64-band images.

    python examples/layers/train_torch.py [--steps 60]

The stem is ``SharedConv2d``: the same 8 filters on every band, no band mixing; the head
reads out per band. The layer picks its strategy at the first call (training: forward and
backward are tuned) and says what it picked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from data import BANDS, CLASSES, batch  # noqa: E402

from sharedconv.layers.torch import SharedConv2d  # noqa: E402


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = SharedConv2d(8, 3, padding="same")
        self.head = nn.Linear(BANDS * 8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))  # (B, bands, 8, H, W)
        return self.head(y.mean(dim=(3, 4)).flatten(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval", type=int, default=256, help="held-out images")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = Net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, labels = batch(rng, args.batch)
        loss = nn.functional.cross_entropy(
            net(torch.from_numpy(x).to(device)), torch.from_numpy(labels).to(device)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1:
            print(f"the stem's choice (first step, {time.perf_counter() - t0:.1f} s with tuning):")
            print(net.stem.choice.describe())
        if step % 20 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}")
    hits = []
    with torch.no_grad():  # forward only: the stem tunes once more, for inference
        for _ in range(max(1, args.eval // args.batch)):
            x, labels = batch(rng, args.batch)
            hits.append(net(torch.from_numpy(x).to(device)).argmax(1).cpu().numpy() == labels)
    accuracy = float(np.mean(hits))
    print(
        f"held-out accuracy {accuracy:.2f} (chance {1 / CLASSES:.2f}); {time.perf_counter() - t0:.1f} s in all"
    )


if __name__ == "__main__":
    main()
