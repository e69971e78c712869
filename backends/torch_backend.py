"""The PyTorch backend: every reasonable way to write the op in PyTorch.

``torch`` is imported inside the functions that need it, so loading this module (to list
strategies or ask ``supports()``) costs nothing. CUDA-only settings are touched only when
the device is ``cuda``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import dist_version, missing_module, refuse_low_precision_fft, tap_slices
from .contract import Backend, Strategy, StrategyTable
from .layouts import from_canonical
from .problem import ConvProblem

HINT = "pip install 'sharedconv[torch]'"


def _torch_dtype(torch: Any, dtype: str) -> Any:
    return {
        "float64": torch.float64,
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
    }[dtype]


def _pad_args(problem: ConvProblem) -> tuple[int, int, int, int]:
    (pt, pb), (pl, pr) = problem.pads
    return (pl, pr, pt, pb)  # F.pad order: last axis first


class Kit:
    """What every builder needs of one problem, made once per prepared call."""

    def __init__(self, torch: Any, problem: ConvProblem):
        self.torch, self.F, self.problem = torch, torch.nn.functional, problem
        self.B, self.C, self.H, self.W = problem.x_shape
        self.N, self.KH, self.KW = problem.w_shape
        self.ho, self.wo = problem.out_hw
        self.stride, self.dilation = problem.stride, problem.dilation
        self.symmetric = problem.symmetric_padding
        self.conv_pad = (problem.pads[0][0], problem.pads[1][0]) if self.symmetric else (0, 0)
        self.pad4 = _pad_args(problem)

    def prepad(self, x: Any) -> Any:
        return x if self.symmetric else self.F.pad(x, self.pad4)

    def conv1(self, x4: Any, w: Any, b: Any) -> Any:
        """The one-channel conv2d: (n, 1, H, W) -> (n, N, H', W')."""
        return self.F.conv2d(
            self.prepad(x4),
            w.unsqueeze(1),
            b,
            stride=self.stride,
            padding=self.conv_pad,
            dilation=self.dilation,
        )


# Each strategy: its descriptor and its builder ``f(kit, x, w, b) -> y`` on torch tensors in
# the declared layouts, declared together.
TABLE = StrategyTable()


@TABLE.strategy(
    "fold",
    "channels folded into the batch: conv2d on (B*C, 1, H, W) with N filters (views only)",
    timed="reshape (view), conv2d, reshape (view)",
    tags=("conv",),
)
def fold(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.conv1(x.reshape(k.B * k.C, 1, k.H, k.W), w, b).reshape(k.B, k.C, k.N, k.ho, k.wo)


@TABLE.strategy(
    "conv3d",
    "conv3d on (B, 1, C, H, W) with a (1, KH, KW) kernel; returns (B, N, C, H', W')",
    output_layout="BNCHW",
    seed_option=1,
    timed="unsqueeze (view), conv3d",
    tags=("conv",),
)
def conv3d(k: Kit, x: Any, w: Any, b: Any) -> Any:
    x5 = x.unsqueeze(1)
    if not k.symmetric:
        x5 = k.F.pad(x5, k.pad4)
    return k.F.conv3d(
        x5,
        w.reshape(k.N, 1, 1, k.KH, k.KW),
        b,
        stride=(1, *k.stride),
        padding=(0, *k.conv_pad),
        dilation=(1, *k.dilation),
    )


@TABLE.strategy(
    "grouped",
    "conv2d(groups=C) with the filters tiled C times (depthwise, multiplier N)",
    timed="conv2d with groups=C on the tiled filters (tiling happens once per call, it is a weight op), view",
    tags=("conv",),
)
def grouped(k: Kit, x: Any, w: Any, b: Any) -> Any:
    wt = w.unsqueeze(1).repeat(k.C, 1, 1, 1)  # (C*N, 1, KH, KW), group c owns filters c*N..
    bt = b.repeat(k.C) if b is not None else None
    y = k.F.conv2d(
        k.prepad(x),
        wt,
        bt,
        stride=k.stride,
        padding=k.conv_pad,
        dilation=k.dilation,
        groups=k.C,
    )
    return y.reshape(k.B, k.C, k.N, k.ho, k.wo)


@TABLE.strategy(
    "vmap",
    "torch.func.vmap of a one-channel conv2d over the channel axis (TimeDistributed in PyTorch form)",
    seed_option=2,
    timed="vmap over C of conv2d",
    tags=("conv", "map"),
)
def vmap(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.torch.func.vmap(lambda xc: k.conv1(xc.unsqueeze(1), w, b), in_dims=1, out_dims=1)(x)


@TABLE.strategy(
    "split",
    "one shared conv2d called per channel, results stacked",
    seed_option=3,
    timed="C conv2d calls on channel slices, torch.stack",
    tags=("conv", "map", "unrolled"),
)
def split(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.torch.stack([k.conv1(x[:, c : c + 1], w, b) for c in range(k.C)], dim=1)


@TABLE.strategy(
    "patches_einsum",
    "patches with F.unfold, then an einsum with the filters",
    timed="F.pad when padding is asymmetric, unfold (copies K*K patches), einsum, view",
    tags=("patches",),
    formerly=("unfold_einsum",),  # the name TensorFlow and JAX give the same idea
)
def patches_einsum(k: Kit, x: Any, w: Any, b: Any) -> Any:
    cols = k.F.unfold(
        k.prepad(x.reshape(k.B * k.C, 1, k.H, k.W)),
        (k.KH, k.KW),
        dilation=k.dilation,
        padding=k.conv_pad,
        stride=k.stride,
    )
    y = k.torch.einsum("ikl,nk->inl", cols, w.reshape(k.N, k.KH * k.KW))
    if b is not None:
        y = y + b[None, :, None]
    return y.reshape(k.B, k.C, k.N, k.ho, k.wo)


def _no_fft_low_precision(problem: ConvProblem, device: str, mode: str) -> str | None:
    return refuse_low_precision_fft(problem, "torch.fft")


@TABLE.strategy(
    "fft",
    "cross-correlation through rfft2 / irfft2 (padding honoured, stride by subsampling)",
    timed="pad, rfft2 of input and dilated filters, product, irfft2, crop/subsample",
    supports_fn=_no_fft_low_precision,
    tags=("fft",),
)
def fft(k: Kit, x: Any, w: Any, b: Any) -> Any:
    torch, (sh, sw) = k.torch, k.stride
    xp = k.F.pad(x, k.pad4)
    hp, wp = xp.shape[-2:]
    dh, dw = k.dilation
    wd = w.new_zeros((k.N, dh * (k.KH - 1) + 1, dw * (k.KW - 1) + 1))
    wd[:, ::dh, ::dw] = w
    xf = torch.fft.rfft2(xp, s=(hp, wp))  # (B, C, hp, wp//2+1)
    wf = torch.fft.rfft2(wd, s=(hp, wp))  # (N, hp, wp//2+1)
    full = torch.fft.irfft2(xf.unsqueeze(2) * wf.conj(), s=(hp, wp))  # circular correlation
    y = full[..., : (k.ho - 1) * sh + 1 : sh, : (k.wo - 1) * sw + 1 : sw]
    if b is not None:
        y = y + b[:, None, None]
    return y


@TABLE.strategy(
    "shift_add",
    "sum over the KH*KW shifted input slices times the filter taps (no patch tensor)",
    timed="pad, KH*KW fused multiply-adds over the whole output",
    tags=("elementwise",),
)
def shift_add(k: Kit, x: Any, w: Any, b: Any) -> Any:
    xp = k.F.pad(x, k.pad4).unsqueeze(2)  # (B, C, 1, Hp, Wp)
    shape = (k.B, k.C, k.N, k.ho, k.wo)
    y = b[:, None, None].expand(shape).clone() if b is not None else x.new_zeros(shape)
    for p in range(k.KH):
        for q in range(k.KW):
            rows, cols = tap_slices(k.problem, p, q)
            y = y.addcmul(xp[..., rows, cols], w[:, p, q][:, None, None])
    return y


@TABLE.strategy(
    "fold_nhwc",
    "fold with channels_last memory format: output (B*C, H', W', N) in memory",
    output_layout="BCHWN",
    timed="reshape, conv2d on channels_last tensors, permute (view)",
    tags=("conv",),
    formerly=("fold_channels_last",),  # JAX's name for the same idea
)
def fold_nhwc(k: Kit, x: Any, w: Any, b: Any) -> Any:
    last = k.torch.channels_last
    x4 = k.prepad(x.reshape(k.B * k.C, 1, k.H, k.W)).contiguous(memory_format=last)
    w4 = w.unsqueeze(1).contiguous(memory_format=last)
    y = k.F.conv2d(x4, w4, b, stride=k.stride, padding=k.conv_pad, dilation=k.dilation)
    return y.permute(0, 2, 3, 1).reshape(k.B, k.C, k.ho, k.wo, k.N)


def _compile_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    if problem.dtype == "float16" and device == "cpu":
        return "torch.compile (inductor) on CPU has no float16 conv kernels worth timing; use float32 or bfloat16"
    return None


TABLE.variant(
    "fold",
    form="compiled",
    name="compiled_fold",
    description="torch.compile of fold (compilation is preparation, reported as first-call time)",
    timed="the compiled fold graph",
    supports_fn=_compile_supports,
    tags=("conv", "compiled"),
)
TABLE.variant(
    "shift_add",
    form="compiled",
    name="compiled_shift_add",
    description="torch.compile of shift_add: inductor fuses the taps into one loop",
    timed="the compiled shift-add kernel",
    supports_fn=_compile_supports,
    tags=("elementwise", "compiled"),
)
STRATEGIES = TABLE.strategies


def _builders(torch: Any, problem: ConvProblem) -> dict[str, Callable]:
    """Each strategy's builder as ``f(x, w, b) -> y`` for this problem (the drop-in layers
    wrap them in layout permutations)."""
    return TABLE.bind_all(Kit(torch, problem))


class TorchBackend(Backend):
    name = "torch"
    install_hint = HINT
    devices = ("cpu", "cuda")
    strategies = STRATEGIES

    def available(self) -> str | None:
        return missing_module("torch", HINT)

    def versions(self) -> dict[str, str]:
        return dist_version("torch")

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # already set once in this process
            torch.set_num_interop_threads(1)
        facts: dict[str, Any] = {
            "intra_op_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
        }
        if device == "cuda":
            tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            torch.backends.cudnn.benchmark = False
            facts.update(
                tf32=tf32,
                cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(),
                gpu=torch.cuda.get_device_name(0),
            )
        return facts

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        import torch

        dev = torch.device("cuda" if device == "cuda" else "cpu")
        dtype = _torch_dtype(torch, problem.dtype)
        train = mode == "train"

        def tensor(a: np.ndarray, grad: bool = False) -> Any:
            # A copy, so the caller's NumPy arrays are never touched.
            t = torch.tensor(np.ascontiguousarray(a), device=dev).to(dtype)
            return t.requires_grad_(grad)

        x = tensor(from_canonical(arrays["x"], strategy.input_layout), train)
        w = tensor(arrays["w"], train)
        b = tensor(arrays["b"], train) if problem.bias else None
        fn = TABLE.bind(strategy, Kit(torch, problem))
        if strategy.form == "compiled":
            torch._dynamo.reset()  # a fresh cache: one problem's graphs never serve another
            fn = torch.compile(fn, dynamic=False, fullgraph=True)

        if not train:

            def forward() -> tuple[Any, ...]:
                with torch.inference_mode():
                    return (fn(x, w, b),)

            return forward

        dy = tensor(from_canonical(arrays["dy"], strategy.output_layout))
        inputs = (x, w, b) if b is not None else (x, w)

        def step() -> tuple[Any, ...]:
            y = fn(x, w, b)
            grads = torch.autograd.grad(y, inputs, grad_outputs=dy)
            return (y.detach(), *grads)

        return step

    def device_memory(self, call: Callable[[], tuple[Any, ...]]) -> dict[str, Any] | None:
        import torch

        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = call()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        del out
        return {
            "peak_bytes": peak - before,
            "method": "torch.cuda.max_memory_allocated over one call minus allocated before",
        }

    def synchronize(self, outputs: tuple[Any, ...]) -> None:
        import torch

        if any(getattr(o, "is_cuda", False) for o in outputs):
            torch.cuda.synchronize()

    def to_numpy(self, outputs: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
        import torch

        out = []
        for t in outputs:
            t = t.detach().cpu()
            if t.dtype == torch.bfloat16:
                t = t.float()
            out.append(t.numpy())
        return tuple(out)
