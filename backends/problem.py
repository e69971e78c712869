"""The problem model: one shared-channel convolution, its derived sizes and its inputs.

A problem is written in a compact text form, ``B=10,C=3,H=200,W=200,N=20,K=5``, that the
command line parses and every table prints. A grid form expands to many problems:
``B=8,C=1..128:x2,H=64,N=16,K=3,5`` (a range with a step ``:x2`` or ``:+4``, or a list of
values after one key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np

DTYPES = ("float64", "float32", "float16", "bfloat16")
PADDINGS = ("valid", "same")
# The element size in bytes of each dtype, for memory and roofline arithmetic.
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}

Padding = str | tuple[int, int]


class ProblemError(ValueError):
    """A problem that cannot exist, or a text form that does not parse."""


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = (value[0], value[1])
    else:
        raise ProblemError(f"{name} must be an integer or a pair of integers, got {value!r}")
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ProblemError(f"{name} must be integers, got {value!r}")
        if v < minimum:
            raise ProblemError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass(frozen=True)
class ConvProblem:
    """One shared-channel convolution.

    ``x (B, C, H, W)`` convolved (cross-correlation) with ``w (N, KH, KW)`` on every
    channel separately, optional bias ``b (N,)``, output ``y (B, C, N, H', W')``.
    """

    B: int
    C: int
    H: int
    W: int
    N: int
    KH: int
    KW: int
    stride: tuple[int, int] = (1, 1)
    padding: Padding = "valid"
    dilation: tuple[int, int] = (1, 1)
    bias: bool = True
    dtype: str = "float32"
    # Derived in __post_init__; excluded from equality so two spellings of one problem match.
    _pads: tuple[tuple[int, int], tuple[int, int]] = field(
        default=((0, 0), (0, 0)), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("B", "C", "H", "W", "N", "KH", "KW"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ProblemError(f"{name} must be a positive integer (>= 1), got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", 1))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", 1))
        if self.dtype not in DTYPES:
            raise ProblemError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ProblemError(f"bias must be True or False, got {self.bias!r}")
        object.__setattr__(self, "bias", bool(self.bias))
        padding = self.padding
        if isinstance(padding, str):
            if padding not in PADDINGS:
                raise ProblemError(
                    f"padding must be 'valid', 'same' or a pair of non-negative integers (ph, pw); got {padding!r}"
                )
        else:
            padding = _pair(padding, "padding", 0)
            object.__setattr__(self, "padding", padding)
        object.__setattr__(self, "_pads", self._derive_pads())
        ho, wo = self.out_hw
        if ho < 1 or wo < 1:
            (pt, pb), (pl, pr) = self._pads
            eff_h = self.dilation[0] * (self.KH - 1) + 1
            eff_w = self.dilation[1] * (self.KW - 1) + 1
            raise ProblemError(
                f"the kernel ({eff_h}x{eff_w} with dilation) is larger than the padded input "
                f"({self.H + pt + pb}x{self.W + pl + pr}); use a smaller K or dilation, a larger H/W, "
                "or more padding"
            )

    def _derive_pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.padding == "valid":
            return (0, 0), (0, 0)
        if self.padding == "same":
            pads = []
            for size, k, s, d in (
                (self.H, self.KH, self.stride[0], self.dilation[0]),
                (self.W, self.KW, self.stride[1], self.dilation[1]),
            ):
                out = -(-size // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
                # TensorFlow's rule: the odd extra pixel goes to the bottom / right.
                pads.append((total // 2, total - total // 2))
            return pads[0], pads[1]
        ph, pw = self.padding
        return (ph, ph), (pw, pw)

    # ---- derived sizes ------------------------------------------------------------
    @property
    def kernel(self) -> tuple[int, int]:
        return self.KH, self.KW

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Explicit ``((top, bottom), (left, right))`` padding, whatever form was given."""
        return self._pads

    @property
    def symmetric_padding(self) -> bool:
        (pt, pb), (pl, pr) = self._pads
        return pt == pb and pl == pr

    @property
    def out_hw(self) -> tuple[int, int]:
        (pt, pb), (pl, pr) = self._pads
        ho = (self.H + pt + pb - self.dilation[0] * (self.KH - 1) - 1) // self.stride[0] + 1
        wo = (self.W + pl + pr - self.dilation[1] * (self.KW - 1) - 1) // self.stride[1] + 1
        return ho, wo

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return self.B, self.C, self.H, self.W

    @property
    def w_shape(self) -> tuple[int, int, int]:
        return self.N, self.KH, self.KW

    @property
    def y_shape(self) -> tuple[int, int, int, int, int]:
        return (self.B, self.C, self.N, *self.out_hw)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two FLOPs, bias excluded (the usual convention)."""
        ho, wo = self.out_hw
        return 2 * self.B * self.C * self.N * ho * wo * self.KH * self.KW

    def train_flops(self) -> int:
        """Forward plus the two backward convolutions (dx and dw), the usual 3x rule."""
        return 3 * self.flops

    def fewest_bytes(self, mode: str = "forward") -> int:
        """Bytes that any implementation must read and write at least once."""
        x = self.B * self.C * self.H * self.W
        w = self.N * self.KH * self.KW
        y = self.B * self.C * self.N * self.out_hw[0] * self.out_hw[1]
        b = self.N if self.bias else 0
        elements = x + w + b + y
        if mode == "train":
            # read dy, write dx, dw, db
            elements += y + x + w + b
        return self.itemsize * elements

    def flops_for(self, mode: str) -> int:
        return self.train_flops() if mode == "train" else self.flops

    # ---- naming -----------------------------------------------------------------------
    def to_text(self) -> str:
        """The compact text form; ``parse_problem(p.to_text()) == p``."""
        parts = [f"B={self.B}", f"C={self.C}", f"H={self.H}", f"W={self.W}", f"N={self.N}"]
        parts.append(f"K={self.KH}" if self.KH == self.KW else f"KH={self.KH},KW={self.KW}")
        if self.stride != (1, 1):
            parts.append(f"stride={_pair_text(self.stride)}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={_pair_text(self.dilation)}")
        if self.padding != "valid":
            pad = self.padding if isinstance(self.padding, str) else _pair_text(self.padding)
            parts.append(f"padding={pad}")
        if not self.bias:
            parts.append("bias=0")
        if self.dtype != "float32":
            parts.append(f"dtype={self.dtype}")
        return ",".join(parts)

    def slug(self) -> str:
        """A short id for file names and test ids: ``B10-C3-200x200-N20-K5``."""
        parts = [f"B{self.B}", f"C{self.C}", f"{self.H}x{self.W}", f"N{self.N}"]
        parts.append(f"K{self.KH}" if self.KH == self.KW else f"K{self.KH}x{self.KW}")
        if self.stride != (1, 1):
            parts.append(f"s{_pair_text(self.stride)}")
        if self.dilation != (1, 1):
            parts.append(f"d{_pair_text(self.dilation)}")
        if self.padding != "valid":
            parts.append(
                f"p{self.padding}"
                if isinstance(self.padding, str)
                else f"p{_pair_text(self.padding)}"
            )
        if not self.bias:
            parts.append("nobias")
        if self.dtype != "float32":
            parts.append(self.dtype)
        return "-".join(parts)

    def __str__(self) -> str:
        return self.to_text()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON and worker messages."""
        return {
            "B": self.B,
            "C": self.C,
            "H": self.H,
            "W": self.W,
            "N": self.N,
            "KH": self.KH,
            "KW": self.KW,
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "bias": self.bias,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvProblem:
        padding = data.get("padding", "valid")
        if isinstance(padding, list):
            padding = tuple(padding)
        return cls(
            B=data["B"],
            C=data["C"],
            H=data["H"],
            W=data["W"],
            N=data["N"],
            KH=data["KH"],
            KW=data["KW"],
            stride=tuple(data.get("stride", (1, 1))),
            padding=padding,
            dilation=tuple(data.get("dilation", (1, 1))),
            bias=data.get("bias", True),
            dtype=data.get("dtype", "float32"),
        )

    def with_(self, **changes: Any) -> ConvProblem:
        return replace(self, **changes)


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


# ---- text form ---------------------------------------------------------------------------
_INT_KEYS = ("B", "C", "H", "W", "N", "K", "KH", "KW")
_KEYS = (*_INT_KEYS, "stride", "dilation", "padding", "bias", "dtype")
_EXAMPLE = "B=10,C=3,H=200,W=200,N=20,K=5"


def _parse_int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProblemError(
            f"{key} must be an integer, got {text!r} (example: {_EXAMPLE})"
        ) from None


def _parse_pair_text(key: str, text: str) -> tuple[int, int]:
    pieces = text.lower().split("x")
    if len(pieces) == 1:
        v = _parse_int(key, pieces[0])
        return v, v
    if len(pieces) == 2 and all(p.strip().lstrip("+-").isdigit() for p in pieces):
        return _parse_int(key, pieces[0]), _parse_int(key, pieces[1])
    raise ProblemError(f"{key} must be N or AxB (e.g. {key}=2 or {key}=2x1), got {text!r}")


MAX_RANGE = 1000  # values of one range
MAX_GRID = 10_000  # problems of one --shape


def _expand_range(key: str, text: str) -> list[str]:
    """``1..128:x2`` -> 1,2,4,...,128; ``8..32:+8`` -> 8,16,24,32; ``1..4`` -> 1,2,3,4."""
    if ".." not in text:
        return [text]
    if key not in _INT_KEYS:
        raise ProblemError(f"ranges (a..b) are only allowed for {', '.join(_INT_KEYS)}, not {key}")
    span, _, step = text.partition(":")
    lo_text, _, hi_text = span.partition("..")
    lo, hi = _parse_int(key, lo_text), _parse_int(key, hi_text)
    if lo < 1 or hi < lo:
        raise ProblemError(f"{key}={text}: a range needs 1 <= start <= end")
    values = []
    if not step or step.startswith("+"):
        inc = _parse_int(key, step[1:]) if step else 1
        if inc < 1:
            raise ProblemError(f"{key}={text}: the step after ':+' must be >= 1")
        count = (hi - lo) // inc + 1  # counted before anything is built
        if count > MAX_RANGE:
            raise ProblemError(f"{key}={text} expands to {count} values; at most {MAX_RANGE}")
        values = list(range(lo, hi + 1, inc))
    elif step.startswith("x"):
        factor = _parse_int(key, step[1:])
        if factor < 2:
            raise ProblemError(f"{key}={text}: the factor after ':x' must be >= 2")
        v = lo
        while v <= hi:
            values.append(v)
            v *= factor
    else:
        raise ProblemError(f"{key}={text}: a range step is ':+N' or ':xN' (e.g. C=1..128:x2)")
    if len(values) > MAX_RANGE:
        raise ProblemError(f"{key}={text} expands to {len(values)} values; at most {MAX_RANGE}")
    return [str(v) for v in values]


def _split_fields(text: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    last: str | None = None
    for raw in text.replace(" ", "").split(","):
        if not raw:
            continue
        if "=" in raw:
            key, _, value = raw.partition("=")
            canon = {k.lower(): k for k in _KEYS}.get(key.lower())
            if canon is None:
                raise ProblemError(
                    f"unknown key {key!r} in {text!r}; valid keys: {', '.join(_KEYS)} "
                    f"(example: {_EXAMPLE})"
                )
            if canon in fields:
                raise ProblemError(f"{canon} is given twice in {text!r}")
            fields[canon] = _expand_range(canon, value)
            last = canon
        elif last is None:
            raise ProblemError(f"{raw!r} has no key; write KEY=VALUE (example: {_EXAMPLE})")
        else:
            # "K=3,5": a bare value adds another value to the previous key.
            fields[last].extend(_expand_range(last, raw))
    return fields


def _build(values: dict[str, str], text: str) -> ConvProblem:
    missing = [k for k in ("C", "H", "N") if k not in values]
    if "K" not in values and not ("KH" in values and "KW" in values):
        missing.append("K (or KH and KW)")
    if missing:
        raise ProblemError(
            f"{text!r} lacks {', '.join(missing)}; a problem needs at least C, H, N and K "
            f"(example: {_EXAMPLE})"
        )
    if "K" in values and ("KH" in values or "KW" in values):
        raise ProblemError(f"give either K or KH and KW, not both, in {text!r}")
    ints = {k: _parse_int(k, v) for k, v in values.items() if k in _INT_KEYS}
    kh = ints.get("KH", ints.get("K"))
    kw = ints.get("KW", ints.get("K"))
    padding: Padding = "valid"
    if "padding" in values:
        pad_text = values["padding"].lower()
        if pad_text in PADDINGS:
            padding = pad_text
        else:
            try:
                padding = _parse_pair_text("padding", pad_text)
            except ProblemError:
                raise ProblemError(
                    f"padding must be 'valid', 'same', N or AxB (e.g. padding=2x1); got {values['padding']!r}"
                ) from None
    bias = True
    if "bias" in values:
        bias_text = values["bias"].lower()
        if bias_text not in ("0", "1", "true", "false", "yes", "no"):
            raise ProblemError(f"bias must be 0 or 1, got {values['bias']!r}")
        bias = bias_text in ("1", "true", "yes")
    return ConvProblem(
        B=ints.get("B", 1),
        C=ints["C"],
        H=ints["H"],
        W=ints.get("W", ints["H"]),
        N=ints["N"],
        KH=kh,
        KW=kw,
        stride=_parse_pair_text("stride", values["stride"]) if "stride" in values else (1, 1),
        dilation=_parse_pair_text("dilation", values["dilation"])
        if "dilation" in values
        else (1, 1),
        padding=padding,
        bias=bias,
        dtype=values.get("dtype", "float32").lower(),
    )


def parse_problems(text: str) -> list[ConvProblem]:
    """Parse the text form, expanding ranges and lists into every combination.

    Defaults: ``B=1``, ``W=H``, stride 1, dilation 1, ``padding=valid``, ``bias=1``,
    ``dtype=float32``.
    """
    if not text or not text.strip():
        raise ProblemError(f"empty problem; example: {_EXAMPLE}")
    fields = _split_fields(text)
    keys = list(fields)
    size = math.prod(len(fields[k]) for k in keys)  # before any combination is built
    if size > MAX_GRID:
        counts = " x ".join(f"{len(fields[k])} {k}" for k in keys if len(fields[k]) > 1)
        raise ProblemError(
            f"{text!r} expands to {size} problems ({counts}); at most {MAX_GRID}: "
            "narrow a range or use a coarser step (e.g. C=1..1024:x2)"
        )
    return [
        _build(dict(zip(keys, combo, strict=True)), text)
        for combo in product(*(fields[k] for k in keys))
    ]


def parse_problem(text: str) -> ConvProblem:
    """Parse exactly one problem (no ranges or lists)."""
    problems = parse_problems(text)
    if len(problems) != 1:
        raise ProblemError(f"{text!r} describes {len(problems)} problems; expected one")
    return problems[0]


# ---- inputs ------------------------------------------------------------------------------
def round_to_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to the nearest value representable in ``dtype``.

    Returns float64 so that the oracle computes on exactly the values a backend sees.
    """
    if dtype == "float64":
        return np.asarray(a, dtype=np.float64)
    if dtype == "float32":
        return a.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return a.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        # Round-to-nearest-even on the top 16 bits of the float32 pattern.
        bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    raise ProblemError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def storage_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype that carries canonical arrays of ``dtype``.

    NumPy has no bfloat16, so bfloat16 inputs travel as float32 arrays holding exactly
    representable bfloat16 values; a backend casts them to its own bfloat16 type.
    """
    return np.dtype(
        {"float64": np.float64, "float32": np.float32, "float16": np.float16}.get(dtype, np.float32)
    )


def make_inputs(
    problem: ConvProblem, seed: int = 0, mode: str = "forward"
) -> dict[str, np.ndarray]:
    """Seeded random canonical inputs: ``x``, ``w``, ``b`` (when bias) and ``dy`` (train).

    Values are standard normal (filters scaled by 1/sqrt(KH*KW) so outputs stay near unit
    size, which float16 needs), never zeros, and already rounded to the problem's dtype.
    The same seed gives the same arrays in every process.
    """
    rng = np.random.default_rng(seed)
    store = storage_dtype(problem.dtype)
    # Generated in float32 unless the problem is float64: a large dy is gigabytes.
    gen = np.float64 if problem.dtype == "float64" else np.float32
    arrays = {
        "x": rng.standard_normal(problem.x_shape, dtype=gen),
        "w": rng.standard_normal(problem.w_shape, dtype=gen)
        / gen(math.sqrt(problem.KH * problem.KW)),
    }
    if problem.bias:
        arrays["b"] = rng.standard_normal((problem.N,), dtype=gen)
    if mode == "train":
        arrays["dy"] = rng.standard_normal(problem.y_shape, dtype=gen)
    return {k: _cast(v, problem.dtype, store) for k, v in arrays.items()}


def input_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """A cheap fingerprint of seeded inputs, to check that two processes generated the same."""
    import hashlib

    h = hashlib.sha1()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(name.encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a.ravel()[:4096]).tobytes())
        h.update(np.ascontiguousarray(a.ravel()[-4096:]).tobytes())
    return h.hexdigest()[:16]


def _cast(a: np.ndarray, dtype: str, store: np.dtype) -> np.ndarray:
    if dtype == "bfloat16":
        return round_to_dtype(a, dtype).astype(store)
    return a.astype(store, copy=False)
