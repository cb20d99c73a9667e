"""Run > cluster: send sweeps and sensitivity to a Ray cluster (quantviz.eval.cluster).

Two actions in the Run menu: *Sweeps and sensitivity on a cluster* (checkable) and
*Cluster address…* (``local``, ``auto`` or ``ray://HOST:PORT``). Both are remembered in
``QSettings`` (``cluster/enabled``, ``cluster/address``). While a job's points run on the
cluster the status bar says how many run and wait (:class:`~quantviz.gui.jobs.JobController`
shows the :class:`~quantviz.eval.points.TasksStatus` it receives); the window keeps working,
Cancel cancels the outstanding tasks. The connection is made in the job's worker thread the
first time (a ``local`` Ray takes a while to start) and kept for the next jobs; closing the
window disconnects (a ``local`` Ray shuts down).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMenu, QWidget

__all__ = ["ADDRESS_KEY", "ENABLED_KEY", "ClusterMenu", "cluster_settings"]

ADDRESS_KEY = "cluster/address"
ENABLED_KEY = "cluster/enabled"


def cluster_settings() -> QSettings:
    """Where the cluster settings live (user scope, INI format, like the recent sessions)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "quantviz", "quantviz")


class ClusterMenu(QObject):
    """The cluster actions of ``win``'s Run ``menu``; sets ``jobs.cluster_address``."""

    def __init__(self, win: QWidget, jobs: Any, menu: QMenu) -> None:
        super().__init__(win)
        self.win, self.jobs = win, jobs
        st = cluster_settings()
        self.address = str(st.value(ADDRESS_KEY, "local") or "local")
        enabled = st.value(ENABLED_KEY, False, type=bool)
        self.useAction = QAction("Sweeps and sensitivity on a cluster", win)
        self.useAction.setObjectName("clusterAction")
        self.useAction.setCheckable(True)
        self.useAction.setChecked(bool(enabled))
        self.useAction.toggled.connect(self._toggled)
        self.addressAction = QAction("Cluster address…", win)
        self.addressAction.setObjectName("clusterAddressAction")
        self.addressAction.triggered.connect(lambda *_: self.ask_address())
        menu.addSeparator()
        menu.addAction(self.useAction)
        menu.addAction(self.addressAction)
        self._update()

    def _update(self) -> None:
        on = self.useAction.isChecked()
        self.jobs.cluster_address = self.address if on else ""
        tip = (
            f"Uniform sweeps and sensitivity run as Ray tasks on {self.address}"
            if on
            else f"Uniform sweeps and sensitivity run in this process (cluster: {self.address})"
        )
        self.useAction.setToolTip(tip)
        self.useAction.setStatusTip(tip)
        self.addressAction.setStatusTip(f"Ray cluster address (now {self.address})")

    def _toggled(self, on: bool) -> None:
        cluster_settings().setValue(ENABLED_KEY, bool(on))
        self._update()

    def set_address(self, text: str) -> bool:
        """Use ``text`` as the cluster address (remembered); False (and a message in the
        status bar) when it is not ``local``, ``auto`` or ``ray://HOST:PORT``."""
        from quantviz.eval.cluster import ClusterError, check_address

        try:
            addr = check_address(text)
        except ClusterError as exc:
            self.jobs.statusMessage.emit(str(exc).replace("--cluster: ", "Cluster address: "), 8000)
            return False
        self.address = addr
        cluster_settings().setValue(ADDRESS_KEY, addr)
        self._update()
        self.jobs.statusMessage.emit(f"Cluster address: {addr}", 4000)
        return True

    def ask_address(self) -> bool:
        """Ask for the address (a dialog named ``clusterAddressDialog``)."""
        dlg = QInputDialog(self.win)
        dlg.setObjectName("clusterAddressDialog")
        dlg.setWindowTitle("Cluster address")
        dlg.setLabelText(
            "Ray cluster for sweeps and sensitivity:\n"
            "local (a Ray on this machine), auto (the running cluster) or ray://HOST:PORT"
        )
        dlg.setTextEchoMode(QLineEdit.EchoMode.Normal)
        dlg.setTextValue(self.address)
        if not dlg.exec():
            return False
        return self.set_address(dlg.textValue())
