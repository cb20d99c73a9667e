"""The Run menu sends sweeps and sensitivity to a cluster (a real local Ray)."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")
pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QInputDialog

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def private_settings(tmp_path):
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path))
    return tmp_path


@pytest.fixture
def window(qtbot, private_settings):
    from quantviz.gui.app import create_main_window

    win = create_main_window()
    win.confirm_close = lambda: "discard"
    qtbot.addWidget(win)
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=60_000):
        win.show()
    yield win
    assert win.shutdown(timeout=30)


def _answer_address(text: str) -> None:
    """Type ``text`` into the address dialog when it appears, and press OK."""

    def fill() -> None:
        dlg = next(
            (w for w in QApplication.topLevelWidgets() if w.objectName() == "clusterAddressDialog"),
            None,
        )
        if dlg is None or not dlg.isVisible():
            QTimer.singleShot(50, fill)
            return
        assert isinstance(dlg, QInputDialog)
        dlg.setTextValue(text)
        dlg.accept()

    QTimer.singleShot(50, fill)


def _values(win, series):
    return {e.name: e.result.value for e in win.session.results if e.series == series}


def test_run_menu_sends_sweep_and_sensitivity_to_the_cluster(window, qtbot, local_ray):
    win = window
    messages: list[str] = []
    win.statusBar().messageChanged.connect(messages.append)
    # Run > Cluster address…: a bad address is refused, "local" is kept
    _answer_address("nowhere")
    win.clusterMenu.addressAction.trigger()
    assert any("Cluster address: expected local, auto" in m for m in messages)
    _answer_address("local")
    win.clusterMenu.addressAction.trigger()
    win.clusterMenu.useAction.trigger()  # Run > Sweeps and sensitivity on a cluster
    assert win.jobs.cluster_address == "local"
    st = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "quantviz", "quantviz")
    assert st.value("cluster/address") == "local"
    assert st.value("cluster/enabled", type=bool) is True

    win.sweepBitsEdit.setText("2,4,8")
    with qtbot.waitSignal(win.jobs.jobDone, timeout=300_000) as done:
        win.sweepAction.trigger()
        # the window keeps working while the tasks run: select another layer
        other = win.session.fqns[-1]
        win.session.select([other])
        assert win.session.selection == (other,)
    assert done.args == ["uniform sweep"]
    assert any(
        "uniform sweep on local:" in m and "running" in m and "waiting" in m for m in messages
    )
    remote_series = win.session.series[-1]
    remote = _values(win, remote_series)
    assert len(remote) == 3

    with qtbot.waitSignal(win.jobs.jobDone, timeout=300_000):
        win.sensitivityAction.trigger()
    assert win.controller.sens is not None
    assert len(win.controller.sens.layers) == len(win.session.fqns)
    assert any(m.startswith("sensitivity on local:") for m in messages)
    sens_remote = {ls.fqn: ls.value for ls in win.controller.sens.layers}

    # the same sweep in this process: the same values
    win.clusterMenu.useAction.trigger()
    assert win.jobs.cluster_address == ""
    with qtbot.waitSignal(win.jobs.jobDone, timeout=300_000):
        win.sweepAction.trigger()
    here = _values(win, win.session.series[-1])
    assert here == remote
    win.controller.sens = None
    with qtbot.waitSignal(win.jobs.jobDone, timeout=300_000):
        win.sensitivityAction.trigger()
    assert {ls.fqn: ls.value for ls in win.controller.sens.layers} == sens_remote
