"""Integer codes of a quantized tensor: ``quantize_codes`` and its inverse ``dequantize_codes``.

The one place where a weight becomes the integers a deployment format stores (after
torchao's ``quantize_affine`` / ``dequantize_affine``). Fitting is :func:`quantize`'s, so
the codes decode to exactly the tensor ``quantize(x, spec).dequantized`` (bit for bit):

* ``uniform`` (``kind="affine"``): ``q = clamp(round(x * (1/scale)) + zero_point, qmin, qmax)``
  per row of the row view, in the same float32 operations as the fake-quant kernel (torch's
  ``fake_quantize_per_*_affine``), and ``x_hat = (q - zero_point) * scale``. ``q`` is the
  signed code for symmetric specs (zero point 0) and ``[0, 2^b - 1]`` for asymmetric ones —
  what ONNX ``DequantizeLinear``, torch's quantized tensors and torchao store.
* scaled codebooks (log2, FP8, FP4, NF4; ``kind="scaled_codebook"``): ``q`` is the index into
  the sorted base levels ``B`` and ``x_hat = B[q] * scale``.
* k-means (``kind="codebook"``): ``q`` is the index into the row's sorted codebook
  ``levels[r]`` and ``x_hat = levels[r, q]``.

Codes are ``int64`` in the row view ``[rows, row_len]`` (one row per scale); :meth:`Codes.shaped`
gives them in the tensor's own shape (per tensor / per channel) or the ``[shape[0], K]``
matrix whose rows hold ``K / group_size`` groups (per group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from quantviz.core.quantizers.base import RowView
from quantviz.core.spec import QuantSpec

if TYPE_CHECKING:
    from quantviz.core.quantization import QuantResult

__all__ = ["Codes", "codes_of", "dequantize_codes", "quantize_codes"]


@dataclass(frozen=True)
class Codes:
    """The integer form of one quantized tensor (see the module doc).

    ``codes`` int64 ``[rows, row_len]``; ``scale`` float32 ``[rows]`` (``None`` for k-means);
    ``zero_point`` int64 ``[rows]`` (affine only); ``levels`` float32 — the base levels ``[L]``
    of a scaled codebook or the codebooks ``[rows, L]`` of k-means (``None`` for affine);
    ``qmin`` / ``qmax`` the code range; ``dtype`` the original tensor's dtype.
    """

    spec: QuantSpec
    row_view: RowView
    kind: str
    codes: torch.Tensor
    scale: torch.Tensor | None
    zero_point: torch.Tensor | None
    levels: torch.Tensor | None
    qmin: int
    qmax: int
    dtype: torch.dtype

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    @property
    def code_bits(self) -> int:
        """Bits an integer type needs to hold every code in ``[qmin, qmax]``."""
        n = self.qmax - self.qmin + 1
        bits = max(1, (n - 1).bit_length())
        if self.signed:  # two's complement of the range [qmin, qmax]
            bits = max(bits, (-self.qmin - 1).bit_length() + 1, self.qmax.bit_length() + 1)
        return bits

    def shaped(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (or other ``rows`` in the row view) in the tensor's shape (per tensor /
        channel) or as the ``[shape[0], K]`` matrix (per group)."""
        rv = self.row_view
        rows = self.codes if rows is None else rows
        if rv.granularity == "per_group":
            return rows.reshape(rv.shape[0], -1)
        return rv.from_rows(rows)

    def base_values(self) -> torch.Tensor:
        """Scaled codebooks: the base level of every code (row view), ``x_hat / scale``."""
        if self.kind != "scaled_codebook" or self.levels is None:
            raise ValueError(f"base_values: only for scaled codebooks, not {self.kind}")
        return self.levels[self.codes]

    def params_shaped(self, t: torch.Tensor) -> torch.Tensor:
        """A per-row parameter as ``[]`` (tensor), ``[C]`` (channel) or ``[C, K/group]``."""
        rv = self.row_view
        if rv.granularity == "per_tensor":
            return t.reshape(())
        if rv.granularity == "per_group":
            return t.reshape(rv.shape[0], -1)
        return t.reshape(-1)


def quantize_codes(x: torch.Tensor, spec: QuantSpec) -> Codes:
    """The codes and parameters of ``quantize(x, spec)``; ``ValueError`` as :func:`quantize`."""
    from quantviz.core.quantization import quantize

    return codes_of(quantize(x, spec, metrics=False), x)


def codes_of(r: QuantResult, x: torch.Tensor) -> Codes:
    """The codes of a :func:`quantize` result ``r`` of tensor ``x`` (no second fit)."""
    spec = r.spec
    rv = r.row_view
    fitted = r.fitted
    if spec.quantizer == "uniform":
        qmin, qmax = spec.qrange
        scale = fitted.scale.to(torch.float32).reshape(-1)  # type: ignore[union-attr]
        zp = fitted.zero_point.to(torch.int64).reshape(-1)  # type: ignore[union-attr]
        xr = rv.to_rows(x.detach().cpu())
        inv = torch.reciprocal(scale)[:, None]  # 1.0f / scale, as the fake-quant kernel
        q = torch.mul(xr, inv).round_()
        q.add_(zp.to(torch.float32)[:, None]).clamp_(qmin, qmax)
        codes = q.to(torch.int64)
        return Codes(spec, rv, "affine", codes, scale, zp, None, qmin, qmax, x.dtype)
    # codebooks: the dequantized values are levels; their index is the code
    if r.dequantized.dtype == torch.float32:
        dq_rows = rv.to_rows(r.dequantized)
    else:  # the float32 levels before the cast to the tensor's dtype
        xr = rv.to_rows(x.detach().cpu()).contiguous()
        dq_rows = torch.empty_like(xr)
        fitted.apply_(xr, dq_rows)
    lv = fitted.levels().to(torch.float32).contiguous()
    if lv.shape[0] == 1 and rv.rows != 1:
        lv = lv.expand(rv.rows, -1).contiguous()
    codes = torch.searchsorted(lv, dq_rows.contiguous()).clamp_(max=lv.shape[1] - 1)
    n = int(lv.shape[1])
    if fitted.scale is not None:  # scaled codebook: base levels times a per-row scale
        from quantviz.core.quantizers.codebook import base_levels

        base = torch.tensor(base_levels(spec), dtype=torch.float32)
        scale = fitted.scale.to(torch.float32).reshape(-1)
        return Codes(spec, rv, "scaled_codebook", codes, scale, None, base, 0, n - 1, x.dtype)
    return Codes(spec, rv, "codebook", codes, None, None, lv, 0, n - 1, x.dtype)


def dequantize_codes(c: Codes) -> torch.Tensor:
    """The tensor the codes stand for (shape and dtype of the original tensor)."""
    rv = c.row_view
    if c.kind == "affine":
        assert c.scale is not None and c.zero_point is not None
        rows = (c.codes - c.zero_point[:, None]).to(torch.float32) * c.scale[:, None]
    elif c.kind == "scaled_codebook":
        assert c.scale is not None and c.levels is not None
        rows = c.levels[c.codes] * c.scale[:, None]
    elif c.kind == "codebook":
        assert c.levels is not None
        rows = torch.gather(c.levels, 1, c.codes)
    else:
        raise ValueError(f"kind: unknown {c.kind!r}")
    out = rv.from_rows(rows)
    return out if out.dtype == c.dtype else out.to(c.dtype)
