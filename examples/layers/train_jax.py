"""A small JAX + Equinox classifier with a shared-channel conv stem on synthetic 64-band images.

    python examples/layers/train_jax.py [--steps 60]

The stem is the Equinox ``SharedConv2d``; the strategy is chosen when the training step is
first traced (forward and backward tuned), and the script says what it picked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from data import BANDS, CLASSES, batch  # noqa: E402

from sharedconv.layers.jax import SharedConv2d, last_choice  # noqa: E402


class Net(eqx.Module):
    stem: SharedConv2d
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.stem = SharedConv2d(8, 3, padding="same", key=k1)
        self.head = eqx.nn.Linear(BANDS * 8, CLASSES, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.stem(x)).mean(axis=(3, 4))  # (B, bands, 8)
        return jax.vmap(self.head)(y.reshape(y.shape[0], -1))


def loss_fn(net: Net, x: jax.Array, labels: jax.Array) -> jax.Array:
    logits = net(x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


@eqx.filter_jit
def step(net: Net, x: jax.Array, labels: jax.Array, lr: float) -> tuple[Net, jax.Array]:
    loss, grads = eqx.filter_value_and_grad(loss_fn)(net, x, labels)
    net = jax.tree_util.tree_map(lambda p, g: p - lr * g, net, grads, is_leaf=lambda v: v is None)
    return net, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval", type=int, default=256, help="held-out images")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    net = Net(jax.random.key(0))
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        x, labels = batch(rng, args.batch)
        net, loss = step(net, jnp.asarray(x), jnp.asarray(labels), 0.05)
        if i == 1:
            print(f"the stem's choice (first step, {time.perf_counter() - t0:.1f} s with tuning):")
            print(last_choice().describe())
        if i % 20 == 0 or i == args.steps:
            print(f"step {i:4d}  loss {float(loss):.3f}")
    predict = eqx.filter_jit(lambda net, x: jnp.argmax(net(x), 1))  # same batch: no new tuning
    hits = []
    for _ in range(max(1, args.eval // args.batch)):
        x, labels = batch(rng, args.batch)
        hits.append(np.asarray(predict(net, jnp.asarray(x))) == labels)
    accuracy = float(np.mean(hits))
    print(
        f"held-out accuracy {accuracy:.2f} (chance {1 / CLASSES:.2f}); {time.perf_counter() - t0:.1f} s in all"
    )


if __name__ == "__main__":
    main()
