#!/usr/bin/env python3
"""What Keras 3 on TensorFlow charges an eager layer call for a ``training`` argument.

    python scripts/bench_keras_training_arg.py      # any interpreter with tensorflow and keras

Two Keras layers run the same small TensorFlow op, one with ``call(self, x)``, one with
``call(self, x, training=None)``; they are called in alternating blocks of 20 calls, a new
random order each cycle, for 6 s, and the cost is the median per-cycle difference (paired).
Also ``tf.is_tensor(None)``, which Keras' ``CallSpec`` asks of every non-tensor argument of
``call`` (the ``typing.Protocol`` check inside it is slow before Python 3.12). The layers of
docs/layers.md pay this on every eager call; it is Keras', not theirs.
"""

import os
import random
import statistics
import sys
import time
import timeit

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SECONDS = 6.0
BLOCK = 20


def main() -> None:
    import keras
    import tensorflow as tf

    print(
        f"Python {sys.version.split()[0]}, TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )
    n = 20000
    best = min(timeit.repeat(lambda: tf.is_tensor(None), number=n, repeat=5)) / n
    print(f"tf.is_tensor(None): {best * 1e6:.2f} us")
    x = tf.ones((1, 8, 8, 1))
    w = tf.ones((3, 3, 1, 4))

    def op(x):
        return tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID"))

    class Plain(keras.layers.Layer):
        def call(self, x):
            return op(x)

    class WithTraining(keras.layers.Layer):
        def call(self, x, training=None):
            return op(x)

    plain, with_training = Plain(), WithTraining()
    calls = {"plain": lambda: plain(x), "training": lambda: with_training(x)}
    for call in calls.values():
        call()
    per: dict[str, list[float]] = {name: [] for name in calls}
    rng = random.Random(1)
    end = time.perf_counter() + SECONDS
    while time.perf_counter() < end:
        order = list(calls)
        rng.shuffle(order)
        for name in order:
            t = time.perf_counter()
            for _ in range(BLOCK):
                calls[name]()
            per[name].append((time.perf_counter() - t) / BLOCK)
    cost = statistics.median(a - b for a, b in zip(per["training"], per["plain"], strict=True))
    print(
        f"eager layer call {statistics.median(per['plain']) * 1e6:.1f} us; a `training` "
        f"argument costs {cost * 1e6:.1f} us more (paired, {len(per['plain'])} cycles)"
    )


if __name__ == "__main__":
    main()
