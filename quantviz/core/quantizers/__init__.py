"""Quantizer families: uniform affine, scaled codebooks (log2, FP8, FP4, NF4), k-means."""

from quantviz.core.quantizers.base import Fitted, RowView, row_view
from quantviz.core.quantizers.codebook import NF4_LEVELS, base_levels
from quantviz.core.quantizers.uniform import uniform_qparams

__all__ = ["NF4_LEVELS", "Fitted", "RowView", "base_levels", "row_view", "uniform_qparams"]
