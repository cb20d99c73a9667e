"""The main window's view actions: the compare dock, copying a layer setting between
configurations, the export dialog and the trade-off plot's curves (a mixin of
:class:`MainWindow`)."""

from __future__ import annotations

from typing import Any

from quantviz.gui.compare import CopyLayerCommand
from quantviz.gui.errors import guarded

__all__ = ["ViewActions"]


class ViewActions:
    """Needs ``session``, ``controller``, ``errors``, ``undoStack``, ``compareDock``,
    ``compareView``, ``tradeoff``, ``histogram``, the runners and ``curvesMenu`` from the
    window."""

    session: Any
    controller: Any
    errors: Any
    undoStack: Any
    compareDock: Any
    compareView: Any
    tradeoff: Any
    histogram: Any
    statsRunner: Any
    jobRunner: Any
    curvesMenu: Any
    exportDialog: Any

    def show_compare(self) -> None:
        """Open the compare view (a floating dock the first time)."""
        d = self.compareDock
        if d.isFloating() and not d.isVisible():
            g = self.geometry()
            d.resize(min(1500, max(g.width() - 80, 900)), min(940, max(g.height() - 60, 700)))
            d.move(g.x() + 40, g.y() + 30)
        d.show()
        d.raise_()

    def _mark_compared(self) -> None:
        shown = self.compareDock.isVisible()
        self.tradeoff.set_compared(self.compareView.compared() if shown else [])

    @guarded("Could not copy the layer setting")
    def copy_layer(self, fqn: str, source: str, target: str) -> None:
        """Copy layer ``fqn``'s setting from configuration ``source`` to ``target`` (undoable)."""
        cmd = CopyLayerCommand(self.session, fqn, source, target)
        if cmd.after == cmd.before:
            self.statusBar().showMessage(f"{fqn} is already the same in {target}", 4000)
            return
        self.undoStack.push(cmd)
        self.statusBar().showMessage(cmd.text(), 4000)

    def show_export_dialog(self) -> None:
        """Open File > Export… (one dialog, kept between uses)."""
        from quantviz.gui.export_dialog import ExportDialog

        if self.exportDialog is None:
            self.exportDialog = ExportDialog(
                self.session,
                self.errors,
                self,
                images=self.report_images,
                wait_before=self._wait_for_jobs,
                model_lock=self.controller.model_lock,
            )
        else:
            self.exportDialog.sync()
        self.exportDialog.show()
        self.exportDialog.raise_()

    def _wait_for_jobs(self) -> None:
        self.statsRunner.wait()
        self.jobRunner.wait()

    def report_images(self) -> dict[str, bytes]:
        """PNGs of the trade-off plot and the current histogram for the HTML report."""
        from quantviz.gui.export_dialog import png_bytes

        out = {"Accuracy vs memory": png_bytes(self.tradeoff.plot)}
        if self.histogram.data is not None:
            out[f"Weights of {self.histogram.data.fqn}"] = png_bytes(self.histogram)
        return out

    def rebuild_curves_menu(self) -> None:
        m = self.curvesMenu
        m.clear()
        series = self.session.series
        for name in series:
            a = m.addAction(name)
            a.triggered.connect(lambda *_, n=name: self.remove_curve(n))
        if not series:
            m.addAction("No curves").setEnabled(False)

    def remove_curve(self, series: str) -> None:
        """Remove the points of result series ``series`` (a sweep's curve)."""
        self.session.clear_results(series)
        self.statusBar().showMessage(f"Removed {series}", 4000)
