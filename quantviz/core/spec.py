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
    "CALIBRATIONS",
    "FIXED_WIDTH",
    "GRANULARITIES",
    "QUANTIZERS",
    "REGEX_PREFIX",
    "LayerConfig",
    "ModelConfig",
    "QuantSpec",
    "check_pattern",
    "is_pattern",
]

QUANTIZERS: tuple[str, ...] = (
    "uniform",
    "log2",
    "kmeans",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp4_e2m1",
    "nf4",
)
GRANULARITIES: tuple[str, ...] = ("per_tensor", "per_channel", "per_group")
CALIBRATIONS: tuple[str, ...] = ("minmax", "percentile", "mse", "kl")

#: Quantizers whose code width is fixed by the format; ``QuantSpec.bits`` is set to it.
FIXED_WIDTH: dict[str, int] = {"fp8_e4m3": 8, "fp8_e5m2": 8, "fp4_e2m1": 4, "nf4": 4}

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
        ``fp8_e5m2``, ``fp4_e2m1`` (OCP float formats, saturating) or ``nf4`` (QLoRA's
        NormalFloat-4 levels).
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
        if self.quantizer == "uniform":
            name = "sym" if self.symmetric else "asym"
            if self.restricted_range:
                name += "-r"
        parts = [str(self.bits), name, gran[self.granularity]]
        if self.calibration != "minmax":
            parts.append(self.calibration)
        if self.dynamic:
            parts.append("dyn")
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

    @property
    def is_float(self) -> bool:
        return self.weight is None and self.activation is None

    def short(self) -> str:
        w = f"W{self.weight.short()}" if self.weight else "W float"
        a = f"A{self.activation.short()}" if self.activation else "A float"
        return f"{w} / {a}"


FLOAT = LayerConfig(weight=None, activation=None)


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

    def __post_init__(self) -> None:
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

    def unknown_keys(self, fqns: Iterable[str]) -> list[str]:
        """Override keys that match none of ``fqns`` (typos in a config file)."""
        names = list(fqns)
        return [k for k, _ in self.overrides if not any(self._matches(k, n) for n in names)]
