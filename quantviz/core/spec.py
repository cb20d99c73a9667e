"""Validated, frozen descriptions of how to quantize a tensor, a layer and a model.

Vocabulary follows Gholami et al., *A Survey of Quantization Methods for Efficient Neural
Network Inference* (2021): uniform vs non-uniform quantizers, symmetric vs asymmetric,
restricted range, static calibration of the clipping range, granularity.

Every invalid value raises ``ValueError`` whose message names the field, e.g.
``bits: must be 1..16, got 0``.  ``quantviz.io`` prefixes the path inside a config file.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantviz.core.granularity import Granularity

__all__ = [
    "BLOCK_FORMATS",
    "CALIBRATIONS",
    "FIXED_WIDTH",
    "GRANULARITIES",
    "QUANTIZERS",
    "REGEX_PREFIX",
    "ROUNDINGS",
    "TRANSFORMS",
    "TRANSFORM_PARAMS",
    "LayerConfig",
    "ModelConfig",
    "QuantSpec",
    "check_pattern",
    "check_transforms",
    "format_number",
    "is_pattern",
    "transform_label",
]

QUANTIZERS: tuple[str, ...] = (
    "uniform",
    "log2",
    "kmeans",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp4_e2m1",
    "nf4",
    "mxfp8_e4m3",
    "mxfp6_e3m2",
    "mxfp6_e2m3",
    "mxfp4",
    "mxint8",
    "nvfp4",
)
GRANULARITIES: tuple[str, ...] = ("per_tensor", "per_channel", "per_group")
CALIBRATIONS: tuple[str, ...] = ("minmax", "percentile", "mse", "kl")
#: How a weight is rounded onto its grid: to the nearest level, by AdaRound's learned
#: up/down decision, or by GPTQ's second-order updates (both from calibration inputs).
ROUNDINGS: tuple[str, ...] = ("nearest", "adaround", "gptq")

#: Quantizers whose code width is fixed by the format; ``QuantSpec.bits`` is set to it.
FIXED_WIDTH: dict[str, int] = {
    "fp8_e4m3": 8,
    "fp8_e5m2": 8,
    "fp4_e2m1": 4,
    "nf4": 4,
    "mxfp8_e4m3": 8,
    "mxfp6_e3m2": 6,
    "mxfp6_e2m3": 6,
    "mxfp4": 4,
    "mxint8": 8,
    "nvfp4": 4,
}

#: Block-scaled formats (OCP MX v1.0, NVIDIA NVFP4) and their block size: one scale per
#: ``block`` contiguous values along the last axis of the ``[shape[0], numel / shape[0]]``
#: view (the reduction axis of a linear / conv weight). Their granularity is fixed:
#: ``per_group`` with ``group_size = block``.
BLOCK_FORMATS: dict[str, int] = {
    "mxfp8_e4m3": 32,
    "mxfp6_e3m2": 32,
    "mxfp6_e2m3": 32,
    "mxfp4": 32,
    "mxint8": 32,
    "nvfp4": 16,
}

MIN_BITS, MAX_BITS = 1, 16


def _check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one tensor.

    Attributes
    ----------
    bits
        Code width, 1..16 for the integer grids (``uniform``, ``log2``, ``kmeans``). The
        float formats and NF4 fix their own width (8 for FP8, 4 for FP4/NF4): ``bits`` is
        set to it whatever was passed.
    quantizer
        ``uniform`` (affine integer grid), ``log2`` (zero and signed powers of two),
        ``kmeans`` (a 2^bits codebook fitted by Lloyd's algorithm), ``fp8_e4m3``,
        ``fp8_e5m2``, ``fp4_e2m1`` (OCP float formats, saturating), ``nf4`` (QLoRA's
        NormalFloat-4 levels), or a block format (:data:`BLOCK_FORMATS`): the OCP MX
        ``mxfp8_e4m3``, ``mxfp6_e3m2``, ``mxfp6_e2m3``, ``mxfp4``, ``mxint8`` (blocks of 32
        sharing a power-of-two E8M0 scale) or NVIDIA's ``nvfp4`` (blocks of 16 with an E4M3
        scale, plus one FP32 scale per tensor). A block format's granularity is its own:
        ``per_tensor`` (the default) becomes ``per_group`` with its block; another
        granularity, group size or a calibration other than ``minmax`` is refused.
    symmetric
        ``uniform`` only: zero_point is 0 and the range is ``[-a, a]``. Asymmetric uses the
        full ``[min, max]`` range with an integer zero point (zero stays exactly
        representable). The sign-symmetric non-uniform formats ignore it.
    restricted_range
        Symmetric ``uniform`` only: codes ``[-(2^(b-1)-1), 2^(b-1)-1]`` instead of
        ``[-2^(b-1), 2^(b-1)-1]``.
    granularity
        A type from :mod:`quantviz.core.granularity` (``PerTensor()``, ``PerAxis(axis)``,
        ``PerGroup(group_size)``; stored in the flat form below and given back by
        :attr:`granularity_type`) or its name: ``per_tensor`` (one scale),
        ``per_channel`` (one per index along ``axis``; the scale
        has shape ``[C]``) or ``per_group`` (the tensor viewed as the matrix
        ``[shape[0], numel/shape[0]]`` — a conv kernel's GEMM view — and split into
        contiguous groups of ``group_size`` along its last axis; the scale has shape
        ``[shape[0] * numel/shape[0]/group_size]``).
    axis
        Channel axis for ``per_channel``; negative values count from the end.
    group_size
        Elements per group for ``per_group``; must divide the row length.
    calibration
        How the clipping range is chosen: ``minmax``, ``percentile`` (of ``|x|`` for
        symmetric ranges, of each tail otherwise), ``mse`` (the range minimising the
        quantization MSE) or ``kl`` (TensorRT's entropy calibration).
    percentile
        For ``percentile`` calibration, in (50, 100].
    dynamic
        Activations only: ranges measured per batch at run time instead of calibrated once.
    rounding
        Weights of the ``uniform`` quantizer only: ``nearest`` (round to the nearest level),
        ``adaround`` (Nagel et al. 2020: each weight rounded up or down as learned from
        calibration inputs with the rectified-sigmoid soft quantizer and an annealed
        regulariser) or ``gptq`` (Frantar et al. 2022: columns quantized in order, the error
        of each spread over the columns not yet quantized through the inverse Hessian
        ``2 X X^T`` of the layer's calibration inputs). The grid (scale, zero point) is the
        one ``calibration`` fits to the float weight; only the rounding changes.
    adaround_iters
        AdaRound's optimisation steps per layer, 1..100000.
    gptq_block_size
        GPTQ's columns per lazily-updated block, 1..8192.
    gptq_damping
        GPTQ's damping, a fraction of the Hessian's mean diagonal added to it, in (0, 1].
    gptq_act_order
        GPTQ quantizes the columns in decreasing Hessian-diagonal order.
    """

    bits: int = 8
    quantizer: str = "uniform"
    symmetric: bool = True
    restricted_range: bool = False
    granularity: str = "per_tensor"
    axis: int = 0
    group_size: int = 128
    calibration: str = "minmax"
    percentile: float = 99.99
    dynamic: bool = False
    rounding: str = "nearest"
    adaround_iters: int = 200
    gptq_block_size: int = 128
    gptq_damping: float = 0.01
    gptq_act_order: bool = False

    def __post_init__(self) -> None:
        from quantviz.core.granularity import PerAxis, PerGroup, PerTensor

        g = self.granularity
        if isinstance(g, PerAxis):  # the typed form: stored flat, as the config file has it
            object.__setattr__(self, "granularity", g.name)
            object.__setattr__(self, "axis", g.axis)
        elif isinstance(g, PerGroup):
            object.__setattr__(self, "granularity", g.name)
            object.__setattr__(self, "group_size", g.group_size)
        elif isinstance(g, PerTensor):
            object.__setattr__(self, "granularity", g.name)
        _check_choice("quantizer", self.quantizer, QUANTIZERS)
        if self.quantizer in BLOCK_FORMATS:
            self._fix_block_granularity()
        _check_int("bits", self.bits)
        if self.quantizer in FIXED_WIDTH:
            object.__setattr__(self, "bits", FIXED_WIDTH[self.quantizer])
        elif not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(f"bits: must be {MIN_BITS}..{MAX_BITS}, got {self.bits}")
        if self.quantizer == "log2" and self.bits < 2:
            raise ValueError("bits: log2 needs at least 2 bits (sign and zero), got 1")
        _check_bool("symmetric", self.symmetric)
        _check_bool("restricted_range", self.restricted_range)
        _check_bool("dynamic", self.dynamic)
        if self.restricted_range and not self.symmetric:
            raise ValueError("restricted_range: only applies to a symmetric range")
        if self.quantizer == "uniform" and self.restricted_range and self.bits < 2:
            raise ValueError("bits: a restricted symmetric range needs at least 2 bits")
        _check_choice("granularity", self.granularity, GRANULARITIES)
        _check_int("axis", self.axis)
        _check_int("group_size", self.group_size)
        if self.group_size < 1:
            raise ValueError(f"group_size: must be >= 1, got {self.group_size}")
        _check_choice("calibration", self.calibration, CALIBRATIONS)
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, int | float):
            raise ValueError(f"percentile: must be a number, got {self.percentile!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"percentile: must be in (50, 100], got {self.percentile}")
        object.__setattr__(self, "percentile", float(self.percentile))
        _check_choice("rounding", self.rounding, ROUNDINGS)
        if self.rounding != "nearest" and self.quantizer != "uniform":
            raise ValueError(
                f"rounding: {self.rounding} needs the uniform quantizer, got {self.quantizer}"
            )
        _check_int("adaround_iters", self.adaround_iters)
        if not 1 <= self.adaround_iters <= 100_000:
            raise ValueError(f"adaround_iters: must be 1..100000, got {self.adaround_iters}")
        _check_int("gptq_block_size", self.gptq_block_size)
        if not 1 <= self.gptq_block_size <= 8192:
            raise ValueError(f"gptq_block_size: must be 1..8192, got {self.gptq_block_size}")
        if isinstance(self.gptq_damping, bool) or not isinstance(self.gptq_damping, int | float):
            raise ValueError(f"gptq_damping: must be a number, got {self.gptq_damping!r}")
        if not 0.0 < float(self.gptq_damping) <= 1.0:
            raise ValueError(f"gptq_damping: must be in (0, 1], got {self.gptq_damping}")
        object.__setattr__(self, "gptq_damping", float(self.gptq_damping))
        _check_bool("gptq_act_order", self.gptq_act_order)

    def _fix_block_granularity(self) -> None:
        """A block format's own granularity: ``per_tensor`` (the default) becomes
        ``per_group`` with the format's block; any other choice is refused."""
        q, block = self.quantizer, BLOCK_FORMATS[self.quantizer]
        if self.granularity == "per_tensor":
            object.__setattr__(self, "granularity", "per_group")
            object.__setattr__(self, "group_size", block)
        elif self.granularity != "per_group":
            raise ValueError(
                f"granularity: {q} has its own granularity (blocks of {block} along the last "
                f"axis: per_group, group_size {block}), got {self.granularity!r}"
            )
        elif self.group_size != block:
            raise ValueError(
                f"group_size: {q} uses blocks of {block} values, got {self.group_size!r}"
            )
        if self.calibration != "minmax":
            raise ValueError(
                f"calibration: {q} sets each block's scale by the format's rule (from the "
                f"block's absolute maximum); only minmax applies, got {self.calibration!r}"
            )

    # -- conveniences -------------------------------------------------------------------
    @property
    def granularity_type(self) -> Granularity:
        """The granularity as a type: ``PerTensor()``, ``PerAxis(axis)`` or
        ``PerGroup(group_size)`` (see :mod:`quantviz.core.granularity`)."""
        from quantviz.core.granularity import granularity_of

        return granularity_of(self.granularity, self.axis, self.group_size)

    @property
    def is_uniform(self) -> bool:
        return self.quantizer == "uniform"

    @property
    def qrange(self) -> tuple[int, int]:
        """Integer code range ``(quant_min, quant_max)`` of the ``uniform`` quantizer."""
        b = self.bits
        if self.symmetric:
            if b == 1:
                return (-1, 0)
            if self.restricted_range:
                return (-(2 ** (b - 1)) + 1, 2 ** (b - 1) - 1)
            return (-(2 ** (b - 1)), 2 ** (b - 1) - 1)
        return (0, 2**b - 1)

    def with_(self, **changes: Any) -> QuantSpec:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)

    def short(self) -> str:
        """Short form for tables, e.g. ``W4 kmeans ch`` without the ``W``: ``4b kmeans ch``."""
        gran = {"per_tensor": "t", "per_channel": "ch", "per_group": f"g{self.group_size}"}
        name = self.quantizer
        if name in BLOCK_FORMATS:  # the block is part of the format's name
            return " ".join([str(self.bits), name, *(["dyn"] if self.dynamic else [])])
        if self.quantizer == "uniform":
            name = "sym" if self.symmetric else "asym"
            if self.restricted_range:
                name += "-r"
        parts = [str(self.bits), name, gran[self.granularity]]
        if self.calibration != "minmax":
            parts.append(self.calibration)
        if self.dynamic:
            parts.append("dyn")
        if self.rounding != "nearest":
            parts.append(self.rounding)
        return " ".join(parts)

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """Fields as a plain dict; only the non-default ones unless ``full``."""
        out: dict[str, Any] = {}
        default = _DEFAULT_SPEC
        for f in fields(self):
            v = getattr(self, f.name)
            if full or v != getattr(default, f.name):
                out[f.name] = v
        if not full and self.quantizer in FIXED_WIDTH:
            out.pop("bits", None)
        if not full and self.quantizer in BLOCK_FORMATS:
            out.pop("granularity", None)
            out.pop("group_size", None)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantSpec:
        """Build from a mapping; unknown keys are an error naming the key.

        Unlike the constructor (which sets a fixed-width format's ``bits`` to its width),
        a mapping that gives ``bits`` for ``fp8_*`` / ``fp4_e2m1`` / ``nf4`` must give their
        width: a file saying ``fp8_e4m3`` with ``bits: 4`` is a mistake, not a request.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"must be a mapping of QuantSpec fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        for k in data:
            if k not in known:
                raise ValueError(f"{k}: unknown field (known: {', '.join(sorted(known))})")
        spec = cls(**dict(data))
        given = data.get("bits")
        if spec.quantizer in FIXED_WIDTH and given is not None and given != spec.bits:
            raise ValueError(
                f"bits: {spec.quantizer} has a fixed width of {spec.bits} bits, got {given!r}"
            )
        if spec.quantizer in BLOCK_FORMATS and data.get("granularity") == "per_tensor":
            raise ValueError(
                f"granularity: {spec.quantizer} has its own granularity (per_group, group_size "
                f"{spec.group_size}), got 'per_tensor'"
            )
        return spec


_DEFAULT_SPEC = QuantSpec()

#: an override key starting with this is a regular expression over the whole layer name
REGEX_PREFIX = "re:"


@functools.lru_cache(maxsize=1024)
def _regex(expr: str) -> re.Pattern[str]:
    return re.compile(expr)


def is_pattern(key: str) -> bool:
    """True for a glob (``*``, ``?``, ``[``) or ``re:`` override key, False for an exact name."""
    return key.startswith(REGEX_PREFIX) or any(c in key for c in "*?[")


def check_pattern(key: str, where: str = "pattern") -> str:
    """``key`` if it is a usable override key; ``ValueError`` naming ``where`` otherwise
    (empty, or a ``re:`` key whose expression does not compile)."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{where}: must be a layer name, a glob or re:<regex>, got {key!r}")
    if key.startswith(REGEX_PREFIX):
        expr = key[len(REGEX_PREFIX) :]
        if not expr:
            raise ValueError(f"{where}: 're:' needs a regular expression after it")
        try:
            _regex(expr)
        except re.error as e:
            pos = "" if e.pos is None else f" at position {e.pos}"
            raise ValueError(f"{where}: invalid regular expression: {e.msg}{pos}") from None
    return key


@dataclass(frozen=True)
class LayerConfig:
    """A layer's weight spec and input-activation spec; ``None`` keeps that tensor float."""

    weight: QuantSpec | None = field(default_factory=QuantSpec)
    activation: QuantSpec | None = None

    def __post_init__(self) -> None:
        for name in ("weight", "activation"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, QuantSpec):
                raise ValueError(f"{name}: must be a QuantSpec or None, got {type(v).__name__}")
        if self.activation is not None and self.activation.rounding != "nearest":
            raise ValueError(
                "activation.rounding: adaround and gptq round weights; an activation is "
                f"rounded to nearest, got {self.activation.rounding}"
            )

    @property
    def is_float(self) -> bool:
        return self.weight is None and self.activation is None

    def short(self) -> str:
        w = f"W{self.weight.short()}" if self.weight else "W float"
        a = f"A{self.activation.short()}" if self.activation else "A float"
        return f"{w} / {a}"


FLOAT = LayerConfig(weight=None, activation=None)

#: Model-level transforms, applied in the config's order before quantization (see
#: ``quantviz.eval.transforms``): ``fold_bn`` (BatchNorm folded into the conv / linear
#: before it), ``cle`` (cross-layer equalization, DFQ), ``bias_correction`` (empirical, from
#: calibration data), ``smoothquant`` (activation outliers migrated into the weights),
#: ``hadamard`` (orthogonal rotations fused into the weights).
TRANSFORMS: tuple[str, ...] = ("fold_bn", "cle", "bias_correction", "smoothquant", "hadamard")

#: transform -> parameter -> ``(kind, default, low, high)`` (bounds inclusive).
TRANSFORM_PARAMS: dict[str, dict[str, tuple[type, Any, Any, Any]]] = {
    "fold_bn": {},
    "cle": {"iterations": (int, 100, 1, 10_000), "tolerance": (float, 1e-4, 0.0, 1.0)},
    "bias_correction": {},
    "smoothquant": {"alpha": (float, 0.5, 0.0, 1.0)},
    "hadamard": {},
}

TransformEntry = tuple[str, tuple[tuple[str, Any], ...]]


def _transform_entry(i: int, item: Any) -> TransformEntry:
    where = f"transforms[{i}]"
    params: Any = {}
    if isinstance(item, str):
        name = item
    elif isinstance(item, Mapping):
        if len(item) != 1:
            raise ValueError(
                f"{where}: a mapping entry has exactly one key, the transform's name "
                f'(e.g. {{"smoothquant": {{"alpha": 0.5}}}}), got {len(item)} keys'
            )
        ((name, params),) = item.items()
    elif isinstance(item, tuple | list) and len(item) == 2:
        name, params = item
    else:
        raise ValueError(
            f"{where}: must be a transform name or {{name: {{parameters}}}}, "
            f"got {type(item).__name__}"
        )
    if not isinstance(name, str) or name not in TRANSFORMS:
        raise ValueError(f"{where}: must be one of {', '.join(TRANSFORMS)}; got {name!r}")
    where = f"transforms.{name}"
    if params is None:
        params = {}
    if isinstance(params, tuple | list):
        try:
            params = dict(params)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: parameters must be a mapping") from None
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: parameters must be a mapping, got {type(params).__name__}")
    table = TRANSFORM_PARAMS[name]
    out: list[tuple[str, Any]] = []
    for k in params:
        if k not in table:
            known = ", ".join(table) or "none"
            raise ValueError(f"{where}.{k}: unknown parameter (known: {known})")
    for k, (kind, default, lo, hi) in table.items():
        v = params.get(k, default)
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or (kind is int and not isinstance(v, int))
        ):
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"{where}.{k}: must be {what}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{where}.{k}: must be in [{lo}, {hi}], got {v!r}")
        out.append((k, kind(v)))
    return name, tuple(out)


def check_transforms(items: Any) -> tuple[TransformEntry, ...]:
    """Validate and normalise transform entries: names, or ``{name: {params}}`` mappings, or
    ``(name, params)`` pairs; every parameter filled in (defaults for the omitted ones).

    ``ValueError`` names the entry: ``transforms[1]: must be one of ...``,
    ``transforms.smoothquant.alpha: must be in [0.0, 1.0], got 2``."""
    if isinstance(items, str | Mapping) or not isinstance(items, Iterable):
        raise ValueError(f"transforms: must be a list of transforms, got {type(items).__name__}")
    items = list(items)
    if len(items) > len(TRANSFORMS):
        raise ValueError(
            f"transforms: at most {len(TRANSFORMS)} entries (each transform once), got {len(items)}"
        )
    out: list[TransformEntry] = []
    for i, item in enumerate(items):
        entry = _transform_entry(i, item)
        if any(e[0] == entry[0] for e in out):
            raise ValueError(f"transforms[{i}]: {entry[0]} appears twice")
        out.append(entry)
    return tuple(out)


def format_number(v: Any) -> str:
    """``0.8``, ``1e-05``, ``5``: short (``:g``) when that reads back as ``v``, else exact."""
    if isinstance(v, int):
        return str(v)
    short = f"{v:g}"
    return short if float(short) == v else repr(v)


def transform_label(transforms: Iterable[TransformEntry]) -> str:
    """``cle+bias_correction``; non-default parameters in brackets (``smoothquant(alpha=0.8)``);
    ``""`` for none."""
    parts = []
    for name, params in transforms:
        table = TRANSFORM_PARAMS[name]
        extra = [f"{k}={format_number(v)}" for k, v in params if v != table[k][1]]
        parts.append(name + (f"({', '.join(extra)})" if extra else ""))
    return "+".join(parts)


@dataclass(frozen=True)
class ModelConfig:
    """A default ``LayerConfig`` plus ordered per-layer overrides.

    Override keys are a layer's fully-qualified name, an ``fnmatch`` glob pattern
    (``features.*``, ``*.mlp.*``) or a regular expression after ``re:``
    (``re:layers\\.\\d+\\.self_attn\\.v_proj``, matched against the whole name);
    :meth:`resolve` applies them in order and the last match wins. An override replaces the
    whole ``LayerConfig`` of the layers it matches.
    """

    default: LayerConfig = field(default_factory=LayerConfig)
    overrides: tuple[tuple[str, LayerConfig], ...] = ()
    model: str | None = None
    #: model-level transforms applied in order before quantization: ``(name, params)``
    #: with every parameter of :data:`TRANSFORM_PARAMS` filled in (see
    #: :func:`check_transforms`, which also accepts names and ``{name: params}``).
    transforms: tuple[TransformEntry, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", check_transforms(self.transforms))
        if not isinstance(self.default, LayerConfig):
            raise ValueError(f"default: must be a LayerConfig, got {type(self.default).__name__}")
        if isinstance(self.overrides, Mapping):
            object.__setattr__(self, "overrides", tuple(self.overrides.items()))
        else:
            object.__setattr__(self, "overrides", tuple(tuple(p) for p in self.overrides))
        seen: set[str] = set()
        for item in self.overrides:
            if len(item) != 2:
                raise ValueError("layers: each override must be a (pattern, LayerConfig) pair")
            key, cfg = item
            if not isinstance(key, str) or not key:
                raise ValueError(f"layers: override keys must be non-empty strings, got {key!r}")
            if key in seen:
                raise ValueError(f"layers.{key}: appears twice")
            check_pattern(key, f"layers.{key}")
            seen.add(key)
            if not isinstance(cfg, LayerConfig):
                raise ValueError(f"layers.{key}: must be a LayerConfig, got {type(cfg).__name__}")
        if self.model is not None and not isinstance(self.model, str):
            raise ValueError(f"model: must be a string, got {self.model!r}")

    @staticmethod
    def is_pattern(key: str) -> bool:
        """True for a glob (``*``, ``?``, ``[``) or ``re:`` key, False for an exact name."""
        return is_pattern(key)

    @staticmethod
    def _matches(pattern: str, fqn: str) -> bool:
        if pattern == fqn:
            return True
        if pattern.startswith(REGEX_PREFIX):
            return _regex(pattern[len(REGEX_PREFIX) :]).fullmatch(fqn) is not None
        return any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(fqn, pattern)

    def resolve(self, fqn: str) -> LayerConfig:
        """The effective ``LayerConfig`` of layer ``fqn``: the last matching override wins."""
        out = self.default
        for pattern, cfg in self.overrides:
            if self._matches(pattern, fqn):
                out = cfg
        return out

    def matching(self, fqn: str) -> list[str]:
        """The override keys that match ``fqn``, in order."""
        return [p for p, _ in self.overrides if self._matches(p, fqn)]

    @property
    def override_dict(self) -> dict[str, LayerConfig]:
        return dict(self.overrides)

    def with_override(self, fqn: str, cfg: LayerConfig | None) -> ModelConfig:
        """A copy where layer ``fqn`` is set to ``cfg`` (appended last, so it wins).

        ``cfg=None`` removes an exact-name override for ``fqn``.
        """
        rest = tuple((k, v) for k, v in self.overrides if k != fqn)
        if cfg is not None:
            rest = (*rest, (fqn, cfg))
        return replace(self, overrides=rest)

    def with_default(self, cfg: LayerConfig) -> ModelConfig:
        return replace(self, default=cfg)

    def with_transforms(self, transforms: Iterable[Any]) -> ModelConfig:
        """A copy with ``transforms`` (validated; names or ``(name, params)``)."""
        return replace(self, transforms=check_transforms(transforms))

    @property
    def transform_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.transforms)

    def transform_params(self, name: str) -> dict[str, Any]:
        """The parameters of transform ``name`` (``KeyError`` if not in this config)."""
        for n, params in self.transforms:
            if n == name:
                return dict(params)
        raise KeyError(name)

    def unknown_keys(self, fqns: Iterable[str]) -> list[str]:
        """Override keys that match none of ``fqns`` (typos in a config file)."""
        names = list(fqns)
        return [k for k, _ in self.overrides if not any(self._matches(k, n) for n in names)]
