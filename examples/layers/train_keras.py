"""A small Keras 3 classifier with a shared-channel conv stem on synthetic 64-band images.

    KERAS_BACKEND=jax python examples/layers/train_keras.py [--steps 60]   # or tensorflow, torch

The stem is ``SharedConv2D`` (channels_last: (B, H, W, bands) -> (B, H, W, bands, 8)): the
layer the 2017 question was looking for, on any Keras backend. It picks its strategy when
``fit`` first traces a training step, and says what it picked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from data import BANDS, CLASSES, SIZE, batch  # noqa: E402

from sharedconv.layers.keras import SharedConv2D  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval", type=int, default=256, help="held-out images")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = keras.Input((SIZE, SIZE, BANDS), batch_size=args.batch)
    stem = SharedConv2D(8, 3, padding="same", name="stem")
    y = keras.layers.ReLU()(stem(inputs))  # (B, H, W, bands, 8)
    y = keras.layers.GlobalAveragePooling3D(data_format="channels_first")(
        keras.layers.Permute((3, 4, 1, 2))(y)
    )  # mean over H, W: (B, bands, 8) flattened
    outputs = keras.layers.Dense(CLASSES)(keras.layers.Flatten()(y))
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, labels = batch(rng, args.steps * args.batch, channels_last=True)
    t0 = time.perf_counter()
    model.fit(x, labels, batch_size=args.batch, epochs=1, verbose=2)
    print(f"the stem's choice on Keras' {keras.backend.backend()} backend:")
    print(stem.choice.describe())
    xt, lt = batch(rng, args.eval, channels_last=True)
    _, accuracy = model.evaluate(xt, lt, batch_size=args.batch, verbose=0)
    print(
        f"held-out accuracy {accuracy:.2f} (chance {1 / CLASSES:.2f}); {time.perf_counter() - t0:.1f} s in all"
    )


if __name__ == "__main__":
    main()
