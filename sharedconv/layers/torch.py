"""``SharedConv2d``: a PyTorch module for N 2-D filters shared across every input channel.

    from sharedconv.layers.torch import SharedConv2d
    conv = SharedConv2d(16, 3, padding=1)      # input (B, C, H, W) -> output (B, C, 16, H, W)
    y = conv(x); print(conv.choice.describe())  # what it picked for this shape, and why

``strategy="auto"`` picks the fastest verified strategy of the PyTorch backend for each new
input shape, dtype, device and mode (see :mod:`sharedconv.layers._core`); a strategy name pins it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from . import _core, _frameworks
from ._core import LayerError, Selector

IN_LAYOUT, OUT_LAYOUT = "BCHW", "BCNHW"
_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def strategies() -> list[str]:
    """The strategies the module can run (``_core.layer_strategies``: the PyTorch backend's
    but the compiled ones, and ``native``)."""
    return _core.layer_strategies("torch")


class SharedConv2d(nn.Module):
    """N filters of ``kernel_size`` applied to every channel of the input separately.

    Input ``(B, C, H, W)``, output ``(B, C, filters, H', W')``; parameters ``weight
    (filters, KH, KW)`` and ``bias (filters,)``, initialised as ``nn.Conv2d(1, filters,
    kernel_size)`` initialises its own. ``padding`` is an int, a pair, ``"valid"`` or
    ``"same"`` (TensorFlow's rule: the odd extra pixel at the bottom/right).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        strategy: str = "auto",
        *,
        tune_budget: float | None = None,
        results: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        filters = _core.check_filters(filters)
        self.filters = filters
        self.kernel_size = _core.pair(kernel_size, "kernel_size")
        self.stride = _core.pair(stride, "stride")
        self.dilation = _core.pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else _core.pair(padding, "padding")
        _core.check_strategy(strategy, strategies())
        self.strategy = strategy
        self._selector = Selector(strategy=strategy, budget=tune_budget, results=results)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((filters, *self.kernel_size), **factory))
        self.bias = nn.Parameter(torch.empty(filters, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d(1, filters, k): kaiming_uniform_(a=sqrt(5)) on (N, 1, KH, KW), fan_in = KH*KW
        nn.init.kaiming_uniform_(self.weight.unsqueeze(1), a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.kernel_size[0] * self.kernel_size[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"filters={self.filters}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, dilation={self.dilation}, bias={self.bias is not None}, "
            f"strategy={self.strategy!r}"
        )

    @property
    def choice(self) -> _core.Choice | None:
        """The decision behind the latest call: strategy, source, candidates and their times."""
        return self._selector.last

    def _mode(self, x: torch.Tensor) -> str:
        wants_grad = (
            x.requires_grad
            or self.weight.requires_grad
            or (self.bias is not None and self.bias.requires_grad)
        )
        return "train" if torch.is_grad_enabled() and wants_grad else "forward"

    @torch.compiler.disable
    def _dispatch(
        self,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        mode: str,
        x: torch.Tensor,
    ) -> Any:
        memo = self._selector.memo.get((shape, dtype, device, mode))
        if memo is not None:
            self._selector.last = memo[0]
            return memo[1]
        if dtype not in _DTYPES:
            raise LayerError(
                f"input dtype {dtype} is not supported; use one of {', '.join(map(str, _DTYPES))}"
            )
        if self.weight.dtype != dtype or self.weight.device != device:
            raise LayerError(
                f"the input is {dtype} on {device} but the weights are {self.weight.dtype} on "
                f"{self.weight.device}; move the module with .to(device, dtype)"
            )
        problem = _core.make_problem(
            shape,
            IN_LAYOUT,
            self.filters,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.bias is not None,
            _DTYPES[dtype],
        )
        key = _frameworks.torch_key(problem, mode, device, f"{IN_LAYOUT}->{OUT_LAYOUT}")
        dev = "cpu" if device.type == "cpu" else "cuda"

        def candidates() -> tuple[dict, dict]:
            return _frameworks.torch_candidates(problem, dev, mode, (IN_LAYOUT, OUT_LAYOUT))

        def runner() -> _core.Runner:
            return _frameworks.torch_runner(problem, x, self.weight, self.bias, OUT_LAYOUT)

        # cuDNN convolutions use TF32 for float32 unless the user turned it off (PyTorch's
        # default): candidates are then held to TF32's bound, and the key says which it was
        tf32 = dev == "cuda" and dtype == torch.float32 and bool(torch.backends.cudnn.allow_tf32)
        if tf32:
            key = dataclasses.replace(key, framework_version=key.framework_version + " tf32")
        choice, fn = _core.choose(self._selector, key, problem, candidates, runner, tf32=tf32)
        self._selector.memo[(shape, dtype, device, mode)] = (choice, fn)
        return fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise LayerError(f"SharedConv2d takes a 4-D tensor (B, C, H, W), got {got}")
        shape, mode = tuple(x.shape), self._mode(x)
        memo = (
            None
            if torch.compiler.is_compiling()
            else self._selector.memo.get((shape, x.dtype, x.device, mode))
        )
        if memo is not None:  # the per-call path: one dict lookup
            self._selector.last = memo[0]
            return memo[1](x, self.weight, self.bias)
        fn = self._dispatch(shape, x.dtype, x.device, mode, x)
        return fn(x, self.weight, self.bias)
