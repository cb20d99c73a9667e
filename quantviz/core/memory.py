"""Storage cost (bits, bytes) and BOPs of tensors, layers and models under a config.

Storage widths counted (all documented promises, used for ``QuantResult.bits_per_value``):

============================  ==========================================================
quantizer                     stored per element + per scale group
============================  ==========================================================
``uniform`` symmetric         ``bits`` code; one float32 scale (32 bits)
``uniform`` asymmetric        ``bits`` code; one float32 scale + one zero point stored at
                              the code width (``bits``)
``log2``                      ``bits`` code; one float32 scale
``kmeans``                    ``bits`` index; a codebook of ``2**bits`` float16 entries
                              (``16 * 2**bits`` bits), no scale
``fp8_e4m3``/``fp8_e5m2``     8-bit code; one float32 scale
``fp4_e2m1``                  4-bit code; one float32 scale
``nf4``                       4-bit code; one float32 absmax
``mxfp8_e4m3``/``mxint8``     8-bit code; one 8-bit E8M0 scale per block of 32 (8.25 bits)
``mxfp6_e3m2``/``mxfp6_e2m3`` 6-bit code; one E8M0 scale per block of 32 (6.25 bits)
``mxfp4``                     4-bit code; one E8M0 scale per block of 32 (4.25 bits)
``nvfp4``                     4-bit code; one 8-bit E4M3 scale per block of 16 (4.5 bits)
                              plus one float32 scale per tensor (32 bits in all)
``None`` (kept float)         32 bits (or the tensor's own dtype width where given)
============================  ==========================================================

A *scale group* is the whole tensor (``per_tensor``), one index along ``axis``
(``per_channel``: ``shape[axis]`` groups) or ``group_size`` contiguous elements of a row of
the matrix view ``[shape[0], numel / shape[0]]`` (``per_group``: ``numel / group_size``
groups; a 1-d tensor ``[n]`` is ``[n, 1]``, so only ``group_size=1`` fits it). These are
the views :func:`quantviz.core.quantize` uses, and the errors for an impossible view match.

Layers are duck-typed: anything with ``fqn``, ``weight_shape``, ``params`` (weight plus bias
elements) and ``macs`` (per sample) works, e.g. :class:`quantviz.model.handle.LayerInfo`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

from quantviz.core.spec import BLOCK_FORMATS, LayerConfig, ModelConfig, QuantSpec

__all__ = [
    "CODEBOOK_ENTRY_BITS",
    "FLOAT_BITS",
    "SCALE_BITS",
    "bits_per_value",
    "bops",
    "float_model_bytes",
    "layer_bytes",
    "model_bytes",
    "num_scale_groups",
    "overhead_bits_per_group",
    "tensor_bits",
    "tensor_bytes",
]

#: Width of an unquantized value and of the "float" side of a BOP.
FLOAT_BITS = 32
#: Width of a stored scale (and of NF4's absmax).
SCALE_BITS = 32
#: Width of one k-means codebook entry (float16).
CODEBOOK_ENTRY_BITS = 16
#: Width of a block format's per-block scale (E8M0 for MX, E4M3 for NVFP4).
BLOCK_SCALE_BITS = 8
#: Bits stored once per tensor besides the blocks (NVFP4's float32 tensor scale).
PER_TENSOR_BITS = {"nvfp4": 32}


class _Layer(Protocol):
    """What the core needs of a layer (``quantviz.model.handle.LayerInfo`` is one); the core
    imports nothing of ``quantviz.model``, not even for type checking."""

    @property
    def fqn(self) -> str: ...
    @property
    def weight_shape(self) -> tuple[int, ...]: ...
    @property
    def params(self) -> int: ...
    @property
    def macs(self) -> int: ...


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"shape: must be a tuple of ints, got {shape!r}") from None
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"shape: must be a tuple of non-negative ints, got {shape}")
    if _numel(shape) == 0:
        raise ValueError(f"shape: the tensor is empty, got {shape}")
    return shape


def num_scale_groups(spec: QuantSpec, shape: tuple[int, ...]) -> int:
    """How many scales (codebooks, absmaxes) ``spec`` stores for a tensor of ``shape``.

    Raises ``ValueError`` for an ``axis`` out of range or a ``group_size`` that does not
    divide the row length.
    """
    shape = _check_shape(shape)
    if spec.granularity == "per_tensor":
        return 1
    if not shape:
        raise ValueError(
            f"granularity: {spec.granularity} needs a tensor with at least one dimension"
        )
    if spec.granularity == "per_channel":
        ndim = len(shape)
        if not -ndim <= spec.axis < ndim:
            raise ValueError(
                f"axis: {spec.axis} is out of range for a {ndim}-D tensor {list(shape)}"
            )
        return shape[spec.axis]
    # per_group: the [shape[0], numel / shape[0]] view, as quantize() uses
    numel = _numel(shape)
    row = numel // shape[0]
    if row % spec.group_size:
        raise ValueError(
            f"group_size: {spec.group_size} does not divide the row length {row} "
            f"(per_group views shape {list(shape)} as [{shape[0]}, {row}])"
        )
    return numel // spec.group_size


def overhead_bits_per_group(spec: QuantSpec) -> int:
    """Bits stored per scale group besides the codes (see the module table)."""
    if spec.quantizer == "uniform":
        return SCALE_BITS + (0 if spec.symmetric else spec.bits)
    if spec.quantizer == "kmeans":
        return CODEBOOK_ENTRY_BITS * 2**spec.bits
    if spec.quantizer in BLOCK_FORMATS:
        return BLOCK_SCALE_BITS
    # log2, fp8_e4m3, fp8_e5m2, fp4_e2m1: a scale; nf4: its absmax.
    return SCALE_BITS


def tensor_bits(
    spec: QuantSpec | None, shape: tuple[int, ...], float_bits: int = FLOAT_BITS
) -> int:
    """Exact total storage bits of a tensor of ``shape``: codes plus all overhead.

    ``spec=None`` (kept float) is ``numel * float_bits``.
    """
    shape = _check_shape(shape)
    numel = _numel(shape)
    if spec is None:
        return numel * float_bits
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: must be a QuantSpec or None, got {type(spec).__name__}")
    once = PER_TENSOR_BITS.get(spec.quantizer, 0)
    return numel * spec.bits + num_scale_groups(spec, shape) * overhead_bits_per_group(spec) + once


def bits_per_value(spec: QuantSpec | None, shape: tuple[int, ...]) -> float:
    """Payload bits per element including scale / zero-point / codebook overhead.

    ``None`` is float32 (32.0). E.g. a 64x64 weight at 4-bit asymmetric per-channel stores
    ``4096 * 4 + 64 * (32 + 4)`` bits, i.e. 4.5625 bits per value.
    """
    shape = _check_shape(shape)
    return tensor_bits(spec, shape) / _numel(shape)


def tensor_bytes(
    spec: QuantSpec | None, shape: tuple[int, ...], float_bytes_per_value: float = 4
) -> float:
    """Storage bytes of one tensor (fractional when the bits do not fill whole bytes).

    ``spec=None`` keeps the tensor at ``float_bytes_per_value`` bytes per element.
    """
    shape = _check_shape(shape)
    if spec is None:
        return float(_numel(shape) * float_bytes_per_value)
    return tensor_bits(spec, shape) / 8


def _bias_count(layer: _Layer) -> int:
    n = int(layer.params) - _numel(tuple(layer.weight_shape))
    if n < 0:
        raise ValueError(
            f"{layer.fqn}: params ({layer.params}) is less than the weight's element count "
            f"({_numel(tuple(layer.weight_shape))})"
        )
    return n


def layer_bytes(
    layer: _Layer,
    cfg: LayerConfig,
    *,
    weight_dtype_bytes: float = 4,
    bias_bytes: float | None = None,
) -> float:
    """Bytes of one layer's parameters under ``cfg``.

    The weight costs :func:`tensor_bytes` under ``cfg.weight`` (``weight_dtype_bytes`` per
    element when kept float). The layer's other parameters (``params`` minus the weight's
    elements: the bias) stay float at ``bias_bytes`` per element (default: the weight's
    dtype width). Activation specs cost no storage. Errors are prefixed with the layer fqn.
    """
    if not isinstance(cfg, LayerConfig):
        raise ValueError(f"{layer.fqn}: cfg must be a LayerConfig, got {type(cfg).__name__}")
    per_bias = weight_dtype_bytes if bias_bytes is None else bias_bytes
    try:
        w = tensor_bytes(cfg.weight, tuple(layer.weight_shape), weight_dtype_bytes)
    except ValueError as e:
        raise ValueError(f"{layer.fqn}: weight {e}") from None
    return w + _bias_count(layer) * per_bias


def model_bytes(
    layers: Iterable[_Layer],
    config: ModelConfig,
    *,
    other_bytes: float = 0,
    weight_dtype_bytes: float = 4,
    bias_bytes: float | None = None,
) -> float:
    """Bytes of a model under ``config``: every layer via :func:`layer_bytes` (its config
    from ``config.resolve(fqn)``) plus ``other_bytes`` for everything that is not a
    quantizable layer's parameter (norm parameters, buffers, ...), counted at their dtype.
    """
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config: must be a ModelConfig, got {type(config).__name__}")
    if other_bytes < 0:
        raise ValueError(f"other_bytes: must be >= 0, got {other_bytes}")
    total = float(other_bytes)
    for layer in layers:
        total += layer_bytes(
            layer,
            config.resolve(layer.fqn),
            weight_dtype_bytes=weight_dtype_bytes,
            bias_bytes=bias_bytes,
        )
    return total


def float_model_bytes(
    layers: Iterable[_Layer],
    *,
    other_bytes: float = 0,
    weight_dtype_bytes: float = 4,
    bias_bytes: float | None = None,
) -> float:
    """Bytes of the model with every tensor kept float: the reference for compression."""
    float_cfg = ModelConfig(default=LayerConfig(weight=None, activation=None))
    return model_bytes(
        layers,
        float_cfg,
        other_bytes=other_bytes,
        weight_dtype_bytes=weight_dtype_bytes,
        bias_bytes=bias_bytes,
    )


def bops(layers: Iterable[_Layer], config: ModelConfig) -> int:
    """Bit operations per sample: sum over layers of MACs x weight bits x activation bits.

    A float weight or activation counts as :data:`FLOAT_BITS` (32) bits; a quantized one as
    its code width ``spec.bits`` (a k-means index, an FP8 code: 8, NF4: 4).
    """
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config: must be a ModelConfig, got {type(config).__name__}")
    total = 0
    for layer in layers:
        lc = config.resolve(layer.fqn)
        wb = lc.weight.bits if lc.weight is not None else FLOAT_BITS
        ab = lc.activation.bits if lc.activation is not None else FLOAT_BITS
        macs = int(layer.macs)
        if macs < 0:
            raise ValueError(f"{layer.fqn}: macs must be >= 0, got {layer.macs}")
        total += macs * wb * ab
    return total
