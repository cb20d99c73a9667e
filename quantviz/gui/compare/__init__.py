"""Compare named configurations side by side (``compareView``).

The widget (:mod:`.view`) reads everything it shows from the Qt-free
:mod:`quantviz.app.compare` model; :mod:`.tables` fills the metrics and per-layer tables,
:mod:`.plots` draws the histograms and the SQNR bar chart, :mod:`.commands` holds the
undoable copy of a layer setting.
"""

from quantviz.app.compare import scheme_text
from quantviz.gui.compare.commands import CopyLayerCommand
from quantviz.gui.compare.view import CompareView

__all__ = ["CompareView", "CopyLayerCommand", "scheme_text"]
