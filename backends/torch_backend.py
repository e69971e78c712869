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
from .contract import Backend, Strategy
from .layouts import from_canonical
from .problem import ConvProblem

HINT = "pip install 'sharedconv[torch]'"


def _no_fft_low_precision(problem: ConvProblem, device: str, mode: str) -> str | None:
    return refuse_low_precision_fft(problem, "torch.fft")


def _compile_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    if problem.dtype == "float16" and device == "cpu":
        return "torch.compile (inductor) on CPU has no float16 conv kernels worth timing; use float32 or bfloat16"
    return None


STRATEGIES = (
    Strategy(
        "fold",
        "channels folded into the batch: conv2d on (B*C, 1, H, W) with N filters (views only)",
        timed="reshape (view), conv2d, reshape (view)",
        tags=("conv",),
    ),
    Strategy(
        "conv3d",
        "conv3d on (B, 1, C, H, W) with a (1, KH, KW) kernel; returns (B, N, C, H', W')",
        output_layout="BNCHW",
        seed_option=1,
        timed="unsqueeze (view), conv3d",
        tags=("conv",),
    ),
    Strategy(
        "grouped",
        "conv2d(groups=C) with the filters tiled C times (depthwise, multiplier N)",
        timed="conv2d with groups=C on the tiled filters (tiling happens once per call, it is a weight op), view",
        tags=("conv",),
    ),
    Strategy(
        "vmap",
        "torch.func.vmap of a one-channel conv2d over the channel axis (TimeDistributed in PyTorch form)",
        seed_option=2,
        timed="vmap over C of conv2d",
        tags=("conv", "map"),
    ),
    Strategy(
        "split",
        "one shared conv2d called per channel, results stacked",
        seed_option=3,
        timed="C conv2d calls on channel slices, torch.stack",
        tags=("conv", "map", "unrolled"),
    ),
    Strategy(
        "unfold_einsum",
        "patches with F.unfold, then an einsum with the filters",
        timed="F.pad when padding is asymmetric, unfold (copies K*K patches), einsum, view",
        tags=("patches",),
    ),
    Strategy(
        "fft",
        "cross-correlation through rfft2 / irfft2 (padding honoured, stride by subsampling)",
        timed="pad, rfft2 of input and dilated filters, product, irfft2, crop/subsample",
        supports_fn=_no_fft_low_precision,
        tags=("fft",),
    ),
    Strategy(
        "shift_add",
        "sum over the KH*KW shifted input slices times the filter taps (no patch tensor)",
        timed="pad, KH*KW fused multiply-adds over the whole output",
        tags=("elementwise",),
    ),
    Strategy(
        "compiled_fold",
        "torch.compile of fold (compilation is preparation, reported as first-call time)",
        timed="the compiled fold graph",
        supports_fn=_compile_supports,
        tags=("conv", "compiled"),
    ),
    Strategy(
        "compiled_shift_add",
        "torch.compile of shift_add: inductor fuses the taps into one loop",
        timed="the compiled shift-add kernel",
        supports_fn=_compile_supports,
        tags=("elementwise", "compiled"),
    ),
    Strategy(
        "fold_channels_last",
        "fold with channels_last memory format: output (B*C, H', W', N) in memory",
        output_layout="BCHWN",
        timed="reshape, conv2d on channels_last tensors, permute (view)",
        tags=("conv",),
    ),
)


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


def _builders(torch: Any, problem: ConvProblem) -> dict[str, Callable]:
    """Each strategy as ``f(x, w, b) -> y`` on torch tensors in the declared layouts."""
    F = torch.nn.functional
    B, C, H, W = problem.x_shape
    N, KH, KW = problem.w_shape
    ho, wo = problem.out_hw
    stride, dilation = problem.stride, problem.dilation
    symmetric = problem.symmetric_padding
    conv_pad = (problem.pads[0][0], problem.pads[1][0]) if symmetric else (0, 0)
    pad4 = _pad_args(problem)

    def prepad(x: Any) -> Any:
        return x if symmetric else F.pad(x, pad4)

    def conv1(x4: Any, w: Any, b: Any) -> Any:
        return F.conv2d(
            prepad(x4), w.unsqueeze(1), b, stride=stride, padding=conv_pad, dilation=dilation
        )

    def fold(x: Any, w: Any, b: Any) -> Any:
        return conv1(x.reshape(B * C, 1, H, W), w, b).reshape(B, C, N, ho, wo)

    def conv3d(x: Any, w: Any, b: Any) -> Any:
        x5 = x.unsqueeze(1)
        if not symmetric:
            x5 = F.pad(x5, pad4)
        return F.conv3d(
            x5,
            w.reshape(N, 1, 1, KH, KW),
            b,
            stride=(1, *stride),
            padding=(0, *conv_pad),
            dilation=(1, *dilation),
        )

    def grouped(x: Any, w: Any, b: Any) -> Any:
        wt = w.unsqueeze(1).repeat(
            C, 1, 1, 1
        )  # (C*N, 1, KH, KW), group c owns filters c*N..c*N+N-1
        bt = b.repeat(C) if b is not None else None
        y = F.conv2d(
            prepad(x), wt, bt, stride=stride, padding=conv_pad, dilation=dilation, groups=C
        )
        return y.reshape(B, C, N, ho, wo)

    def vmap(x: Any, w: Any, b: Any) -> Any:
        return torch.func.vmap(lambda xc: conv1(xc.unsqueeze(1), w, b), in_dims=1, out_dims=1)(x)

    def split(x: Any, w: Any, b: Any) -> Any:
        return torch.stack([conv1(x[:, c : c + 1], w, b) for c in range(C)], dim=1)

    def unfold_einsum(x: Any, w: Any, b: Any) -> Any:
        cols = F.unfold(
            prepad(x.reshape(B * C, 1, H, W)),
            (KH, KW),
            dilation=dilation,
            padding=conv_pad,
            stride=stride,
        )
        y = torch.einsum("ikl,nk->inl", cols, w.reshape(N, KH * KW))
        if b is not None:
            y = y + b[None, :, None]
        return y.reshape(B, C, N, ho, wo)

    def fft(x: Any, w: Any, b: Any) -> Any:
        xp = F.pad(x, pad4)
        hp, wp = xp.shape[-2:]
        dh, dw = dilation
        wd = w.new_zeros((N, dh * (KH - 1) + 1, dw * (KW - 1) + 1))
        wd[:, ::dh, ::dw] = w
        xf = torch.fft.rfft2(xp, s=(hp, wp))  # (B, C, hp, wp//2+1)
        wf = torch.fft.rfft2(wd, s=(hp, wp))  # (N, hp, wp//2+1)
        full = torch.fft.irfft2(xf.unsqueeze(2) * wf.conj(), s=(hp, wp))  # circular correlation
        y = full[
            ..., : (ho - 1) * stride[0] + 1 : stride[0], : (wo - 1) * stride[1] + 1 : stride[1]
        ]
        if b is not None:
            y = y + b[:, None, None]
        return y

    def shift_add(x: Any, w: Any, b: Any) -> Any:
        xp = F.pad(x, pad4).unsqueeze(2)  # (B, C, 1, Hp, Wp)
        if b is not None:
            y = b[:, None, None].expand(B, C, N, ho, wo).clone()
        else:
            y = x.new_zeros((B, C, N, ho, wo))
        for p in range(KH):
            for q in range(KW):
                rows, cols = tap_slices(problem, p, q)
                y = y.addcmul(xp[..., rows, cols], w[:, p, q][:, None, None])
        return y

    def fold_channels_last(x: Any, w: Any, b: Any) -> Any:
        x4 = prepad(x.reshape(B * C, 1, H, W)).contiguous(memory_format=torch.channels_last)
        w4 = w.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x4, w4, b, stride=stride, padding=conv_pad, dilation=dilation)
        return y.permute(0, 2, 3, 1).reshape(B, C, ho, wo, N)

    return {
        "fold": fold,
        "conv3d": conv3d,
        "grouped": grouped,
        "vmap": vmap,
        "split": split,
        "unfold_einsum": unfold_einsum,
        "fft": fft,
        "shift_add": shift_add,
        "fold_channels_last": fold_channels_last,
    }


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
        name = strategy.name
        base = name.removeprefix("compiled_")
        fn = _builders(torch, problem)[base]
        if name.startswith("compiled_"):
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
