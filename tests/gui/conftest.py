"""GUI tests: pytest-qt on the offscreen platform; skipped where PySide6 is missing."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:  # the core-only CI venv has no Qt: collect nothing here
    import pyqtgraph  # noqa: F401
    import PySide6  # noqa: F401
except ImportError:  # pragma: no cover
    collect_ignore_glob = ["test_*.py"]
else:
    import pytest

    @pytest.fixture
    def window(qtbot):
        """The main window with the bundled sample open (and its calibration stats)."""
        from quantviz.gui.app import create_main_window

        win = create_main_window()
        win.confirm_close = lambda: "discard"  # the quit prompt has its own test
        qtbot.addWidget(win)
        with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=60_000):
            win.show()
        yield win
        assert win.shutdown(timeout=30)

    @pytest.fixture
    def tensor_handle():
        """Factory: a real ModelHandle whose Linear layers hold the given 2-D weights."""
        import torch
        from torch import nn

        from quantviz.model.handle import LayerInfo, ModelHandle

        def make(weights):
            mod = nn.Module()
            layers = []
            for name, w in weights.items():
                lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
                with torch.no_grad():
                    lin.weight.copy_(w)
                mod.add_module(name, lin)
                layers.append(
                    LayerInfo(name, "linear", tuple(w.shape), w.numel(), class_name="Linear")
                )
            return ModelHandle("test", "test", mod, layers, torch.zeros(1, w.shape[1]))

        return make
