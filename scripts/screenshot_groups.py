"""Screenshot of the grouped layer inspector and the override editor.

    python scripts/screenshot_groups.py [--out docs] [--dark]   # on a display (Xvfb works)

Saves a 40-block decoder-shaped stack (tests/models.py ``block_stack``) to a temporary
folder, opens it as a user would (``blocks.pt::tests.models:block_stack``), then, with
mouse and keyboard events: types ``*.mlp.*`` in the override editor at 4 bits per group of
32, types ``re:layers\\.3\\..*`` at 6 bits, opens blocks 2 and 3, filters the table with a
regex and grabs the left panel (``layer_groups_<light|dark>.png``) and the whole window.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def settle(ms: int = 300) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        QApplication.processEvents()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--dark", action="store_true")
    args = ap.parse_args()
    import torch
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from quantviz.gui.app import create_main_window
    from quantviz.gui.workers import wait_for_signal
    from tests.models import block_stack

    tmp = Path(tempfile.mkdtemp(prefix="quantviz-shot-"))
    path = tmp / "blocks.pt"
    torch.save(block_stack().state_dict(), path)
    (tmp / "blocks.pt.json").write_text(json.dumps({"input_shape": [1, 4, 64]}))
    win = create_main_window(f"{path}::tests.models:block_stack", dark=args.dark)
    win.resize(1680, 1000)
    win.confirm_close = lambda: "discard"
    win.show()
    wait_for_signal(win.modelLoaded, 300)
    ed, table = win.overrides, win.table
    ctl, s = win.controller, win.session

    def type_override(pattern: str, bits: int, gran: str, group: int = 128) -> None:
        ed.pattern.clear()
        QTest.keyClicks(ed.pattern, pattern)
        ed.bitsSpin.setValue(bits)
        ed.granCombo.setCurrentIndex(ed.granCombo.findData(gran))
        ed.groupSpin.setValue(group)
        QTest.mouseClick(ed.setButton, Qt.MouseButton.LeftButton)
        settle()

    type_override("*.mlp.*", 4, "per_group", 32)
    type_override(r"re:layers\.3\..*", 6, "per_channel")
    for label in ("layers.2", "layers.3"):
        p = table.proxy
        idx = next(p.index(r, 0) for r in range(p.rowCount()) if label in p.index(r, 0).data())
        table.view.expand(idx)
    # select block 3's MLP rows (the second is shift-clicked)
    p = table.proxy
    g3 = next(p.index(r, 0) for r in range(p.rowCount()) if p.index(r, 0).data().endswith("3"))
    ups = [p.index(r, 0, g3) for r in range(p.rowCount(g3))]
    view = table.view
    vp = view.viewport()
    QTest.mouseClick(vp, Qt.MouseButton.LeftButton, pos=view.visualRect(ups[4]).center())
    QTest.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ShiftModifier,
        view.visualRect(ups[5]).center(),
    )
    ed.list.setCurrentRow(0)
    end = time.perf_counter() + 120
    while time.perf_counter() < end and any(ctl.layer_sqnr(f) is None for f in s.fqns):
        settle(100)
    settle(600)
    suffix = "dark" if args.dark else "light"
    out = Path(args.out)
    left = table.parentWidget()
    left.grab().save(str(out / f"layer_groups_{suffix}.png"))
    win.grab().save(str(tmp / f"window_{suffix}.png"))
    QTest.keyClicks(table.filter, r"layers\.1\d\.mlp")
    settle()
    left.grab().save(str(tmp / f"layer_groups_filtered_{suffix}.png"))
    QTest.keyClicks(table.filter, "(")
    settle()
    left.grab().save(str(tmp / f"layer_groups_bad_filter_{suffix}.png"))
    print(tmp)
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
