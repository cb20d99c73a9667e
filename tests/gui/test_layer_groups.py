"""The layer inspector on a model with 40 numbered blocks (242 layers), driven as a user
would: blocks as groups that collapse and expand by click and key, a regex filter, grouped
edits in one undoable step, glob / regex overrides typed in the override editor and
reordered (the last match wins), and the SQNR column filling from a worker while the GUI
answers."""

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import torch
from models import block_stack
from PySide6.QtCore import Qt, QTimer

N_BLOCKS, PER_BLOCK, N_LAYERS = 40, 6, 242
FLOAT_W = "W8 sym ch"  # the default weight scheme as the table shows it


@pytest.fixture
def blocks(qtbot, tmp_path):
    """The main window with a 40-block decoder-shaped stack opened from a weights file
    (``blocks.pt::models:block_stack``, input shape from the sidecar)."""
    from quantviz.gui.app import create_main_window

    path = tmp_path / "blocks.pt"
    torch.save(block_stack().state_dict(), path)
    (tmp_path / "blocks.pt.json").write_text(json.dumps({"input_shape": [1, 4, 64]}))
    win = create_main_window()
    win.confirm_close = lambda: "discard"
    qtbot.addWidget(win)
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=60_000):
        win.show()
    with qtbot.waitSignal(win.modelLoaded, timeout=120_000):
        win.open_model(f"{path}::models:block_stack")
    assert len(win.session.fqns) == N_LAYERS
    yield win
    assert win.shutdown(timeout=30)


def top_texts(win, col=0):
    p = win.table.proxy
    return [p.index(r, col).data() for r in range(p.rowCount())]


def group_index(win, label):
    p = win.table.proxy
    for r in range(p.rowCount()):
        idx = p.index(r, 0)
        if idx.data().lstrip("• ") == label:
            return idx
    raise AssertionError(f"no row {label!r}")


def child_index(win, block, name):
    g = group_index(win, block)
    p = win.table.proxy
    for r in range(p.rowCount(g)):
        idx = p.index(r, 0, g)
        if idx.data().lstrip("• ") == name:
            return idx
    raise AssertionError(f"no row {name!r} under {block!r}")


def click(qtbot, win, idx, modifier=Qt.KeyboardModifier.NoModifier):
    view = win.table.view
    view.scrollTo(idx)
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, modifier, view.visualRect(idx).center()
    )


def shown_rows(win):
    """Every row the user can scroll to (expanded blocks' layers included)."""
    p, view = win.table.proxy, win.table.view
    n = 0
    for r in range(p.rowCount()):
        idx = p.index(r, 0)
        n += 1
        if view.isExpanded(idx):
            n += p.rowCount(idx)
    return n


def test_blocks_group_collapse_expand_and_regex_filter(blocks, qtbot):
    win = blocks
    table, view = win.table, win.table.view
    texts = top_texts(win)
    # embed, layers.0 ... layers.39, lm_head: one row per block, collapsed
    assert texts == ["embed", *(f"layers.{i}" for i in range(N_BLOCKS)), "lm_head"]
    assert top_texts(win, 1)[1] == f"{PER_BLOCK} layers"
    assert top_texts(win, 3)[1] == "32.8k"  # 4 x 64x64 + 2 x 64x128 weights
    assert top_texts(win, 4)[1] == FLOAT_W  # the block's common scheme
    assert table.matchLabel.text() == f"{N_LAYERS} layers in {N_BLOCKS} blocks"
    assert shown_rows(win) == N_BLOCKS + 2
    # expand one block by clicking its arrow: its six layers, by their names in the block
    g3 = group_index(win, "layers.3")
    rect = view.visualRect(g3)
    arrow = rect.center()
    arrow.setX(rect.left() - view.indentation() // 2)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=arrow)
    assert view.isExpanded(g3)
    p = table.proxy
    assert [p.index(r, 0, g3).data() for r in range(p.rowCount(g3))] == [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ]
    assert shown_rows(win) == N_BLOCKS + 2 + PER_BLOCK
    # collapse and expand another one with the keyboard (Left / Right on the block row)
    click(qtbot, win, group_index(win, "layers.7"))
    g7 = group_index(win, "layers.7")
    assert win.session.selection == tuple(f for f in win.session.fqns if "layers.7." in f)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.isExpanded(g7)
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert not view.isExpanded(g7)
    # Collapse all / Expand all
    qtbot.mouseClick(table.expandButton, Qt.MouseButton.LeftButton)
    assert shown_rows(win) == N_BLOCKS + 2 + N_LAYERS - 2
    qtbot.mouseClick(table.collapseButton, Qt.MouseButton.LeftButton)
    assert shown_rows(win) == N_BLOCKS + 2
    # a regex narrows the rows: blocks 10..19's MLPs
    table.filter.setFocus()
    qtbot.keyClicks(table.filter, r"layers\.1\d\.mlp")
    assert top_texts(win) == [f"layers.{i}" for i in range(10, 20)]
    assert table.visible_fqns() == [
        f"layers.{i}.mlp.{p}" for i in range(10, 20) for p in ("up_proj", "down_proj")
    ]
    assert table.matchLabel.text() == f"20 of {N_LAYERS} layers match the filter"
    assert view.isExpanded(group_index(win, "layers.12"))  # matches are shown
    # an invalid expression: a message under the field, the rows stay as they were
    qtbot.keyClicks(table.filter, "(")
    assert table.filterError.isVisible()
    assert "Invalid regular expression" in table.filterError.text()
    assert "position" in table.filterError.text()
    assert len(top_texts(win)) == 10
    qtbot.keyClick(table.filter, Qt.Key.Key_Backspace)
    assert not table.filterError.isVisible()
    table.filter.clear()
    assert len(top_texts(win)) == N_BLOCKS + 2
    assert table.matchLabel.text() == f"{N_LAYERS} layers in {N_BLOCKS} blocks"


def test_select_several_layers_set_bits_in_one_step_and_undo(blocks, qtbot):
    win = blocks
    s = win.session
    click(qtbot, win, group_index(win, "layers.2"))  # a block row selects its layers
    click(qtbot, win, group_index(win, "layers.5"), Qt.KeyboardModifier.ControlModifier)
    win.table.view.expand(group_index(win, "layers.9"))
    click(
        qtbot,
        win,
        child_index(win, "layers.9", "self_attn.v_proj"),
        Qt.KeyboardModifier.ControlModifier,
    )
    want = [f for f in s.fqns if f.startswith(("layers.2.", "layers.5."))]
    want.append("layers.9.self_attn.v_proj")
    assert s.selection == tuple(want)
    steps = win.undoStack.count()
    spin = win.controls.bitsSpin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "3")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert win.undoStack.count() == steps + 1  # one step for all 13 layers
    bits = {f: s.config.resolve(f).weight.bits for f in s.fqns}
    assert {f for f, b in bits.items() if b == 3} == set(want)
    # what the user sees: the blocks' scheme, the changed marker, the edited layer
    assert group_index(win, "layers.2").data() == "• layers.2"
    assert group_index(win, "layers.2").siblingAtColumn(4).data() == "W3 sym ch"
    assert group_index(win, "layers.9").siblingAtColumn(4).data() == "mixed"
    assert child_index(win, "layers.9", "self_attn.v_proj").siblingAtColumn(4).data() == (
        "W3 sym ch"
    )
    assert child_index(win, "layers.9", "self_attn.q_proj").siblingAtColumn(4).data() == FLOAT_W
    # Ctrl+Z undoes all of it
    win.table.view.setFocus()
    qtbot.keyClick(win.table.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert all(s.config.resolve(f).weight.bits == 8 for f in s.fqns)
    assert group_index(win, "layers.2").data() == "layers.2"
    assert group_index(win, "layers.9").siblingAtColumn(4).data() == FLOAT_W


def test_glob_override_typed_applies_and_reordering_decides(blocks, qtbot):
    win = blocks
    s, ed = win.session, win.overrides
    ed.pattern.setFocus()
    qtbot.keyClicks(ed.pattern, "*.mlp.*")
    assert ed.matchLabel.text() == "80 layers match"
    ed.bitsSpin.setValue(4)
    ed.granCombo.setCurrentIndex(ed.granCombo.findData("per_group"))
    ed.groupSpin.setValue(32)
    steps = win.undoStack.count()
    qtbot.mouseClick(ed.setButton, Qt.MouseButton.LeftButton)
    assert win.undoStack.count() == steps + 1
    w4 = {f for f in s.fqns if s.config.resolve(f).weight.bits == 4}
    assert w4 == {f for f in s.fqns if ".mlp." in f}
    assert [ed.list.item(i).text() for i in range(ed.list.count())] == [
        "1. *.mlp.*  →  W4 sym g32 / A float   (80 layers)"
    ]
    assert group_index(win, "layers.0").siblingAtColumn(4).data() == "mixed"
    win.table.view.expand(group_index(win, "layers.3"))
    up3 = child_index(win, "layers.3", "mlp.up_proj")
    assert up3.siblingAtColumn(4).data() == "W4 sym g32"
    # a regex typed in the same field: block 3 at 6 bits, applied after the glob
    ed.pattern.clear()
    qtbot.keyClicks(ed.pattern, r"re:layers\.3\..*")
    assert ed.matchLabel.text() == "6 layers match"
    ed.granCombo.setCurrentIndex(ed.granCombo.findData("per_channel"))
    ed.bitsSpin.setValue(6)
    qtbot.keyClick(ed.pattern, Qt.Key.Key_Return)
    texts = [ed.list.item(i).text() for i in range(ed.list.count())]
    assert texts == [
        "1. *.mlp.*  →  W4 sym g32 / A float   (80 layers, 2 taken by a later override)",
        r"2. re:layers\.3\..*  →  W6 sym ch / A float   (6 layers)",
    ]
    up3 = child_index(win, "layers.3", "mlp.up_proj")
    assert up3.siblingAtColumn(4).data() == "W6 sym ch"  # the last match wins
    tip = up3.siblingAtColumn(4).data(Qt.ItemDataRole.ToolTipRole)
    assert "the last match wins" in tip and r"re:layers\.3\..*" in tip
    # move the regex up: now the glob is last and wins for layers.3's MLP (the user
    # clicks the second row of the list, as the view shows it)
    rect = ed.list.visualItemRect(ed.list.item(1))
    assert rect.height() > 0 and ed.list.indexAt(rect.center()).row() == 1
    qtbot.mouseClick(ed.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert ed.list.currentRow() == 1
    assert ed.pattern.text() == r"re:layers\.3\..*"  # the chosen override, in the fields
    qtbot.mouseClick(ed.upButton, Qt.MouseButton.LeftButton)
    assert [k for k, _ in s.config.overrides] == [r"re:layers\.3\..*", "*.mlp.*"]
    assert s.config.resolve("layers.3.mlp.up_proj").weight.bits == 4
    assert s.config.resolve("layers.3.self_attn.q_proj").weight.bits == 6
    up3 = child_index(win, "layers.3", "mlp.up_proj")
    assert up3.siblingAtColumn(4).data() == "W4 sym g32"
    assert ed.list.currentItem().text().startswith("1. re:layers")
    # each step undoes on its own
    win.undoAction.trigger()
    assert s.config.resolve("layers.3.mlp.up_proj").weight.bits == 6
    win.redoAction.trigger()
    # a drag in the list is a move of its model's rows: the same one-step reorder
    moved = ed.list.model().moveRow(ed.list.rootIndex(), 0, ed.list.rootIndex(), 2)
    assert moved
    qtbot.waitUntil(lambda: s.config.overrides[0][0] == "*.mlp.*")
    assert s.config.resolve("layers.3.mlp.up_proj").weight.bits == 6
    # Ctrl+Down on the list moves the chosen one later (undone right away)
    ed.list.setFocus()
    ed.list.setCurrentRow(0)
    qtbot.keyClick(ed.list, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert s.config.overrides[1][0] == "*.mlp.*"
    win.undoAction.trigger()
    assert s.config.overrides[0][0] == "*.mlp.*"
    # delete the glob with the Delete key: only block 3 keeps an override
    ed.list.setCurrentRow(0)
    qtbot.keyClick(ed.list, Qt.Key.Key_Delete)
    assert [k for k, _ in s.config.overrides] == [r"re:layers\.3\..*"]
    assert s.config.resolve("layers.4.mlp.up_proj").weight.bits == 8
    # a bad pattern says so and sets nothing
    ed.pattern.clear()
    qtbot.keyClicks(ed.pattern, "re:layers.(")
    assert "invalid regular expression" in ed.matchLabel.text()
    assert not ed.setButton.isEnabled()
    ed.pattern.clear()
    qtbot.keyClicks(ed.pattern, "*.nothing")
    assert ed.matchLabel.text() == "no layer matches"
    # Select puts the matches in the table
    ed.pattern.clear()
    qtbot.keyClicks(ed.pattern, "*.v_proj")
    qtbot.mouseClick(ed.selectButton, Qt.MouseButton.LeftButton)
    assert s.selection == tuple(f"layers.{i}.self_attn.v_proj" for i in range(N_BLOCKS))
    assert set(win.table.selected_fqns()) == set(s.selection)


def test_sqnr_fills_in_the_background_while_the_gui_answers(blocks, qtbot):
    win = blocks
    ctl, s, model = win.controller, win.session, win.table.model
    qtbot.waitUntil(lambda: all(ctl.layer_sqnr(f) is not None for f in s.fqns), timeout=120_000)
    # a config change makes every SQNR unknown again: it is refilled by the worker
    seen: list[int] = []
    flushes: list[int] = []
    model.dataChanged.connect(lambda *_: flushes.append(1))

    def beat():  # a heartbeat on the GUI thread: how much of the column is filled
        seen.append(sum(ctl.layer_sqnr(f) is not None for f in s.fqns))

    timer = QTimer()
    timer.timeout.connect(beat)
    timer.start(5)
    # the user picks a layer, sets 5 bits and applies that to every layer
    click(qtbot, win, group_index(win, "lm_head"))
    win.controls.bitsSpin.setValue(5)
    seen.clear()
    qtbot.mouseClick(win.controls.applyAllButton, Qt.MouseButton.LeftButton)
    assert win.sqnrRunner.running  # 242 layers: in the worker, not inline
    qtbot.waitUntil(lambda: all(ctl.layer_sqnr(f) is not None for f in s.fqns), timeout=120_000)
    qtbot.waitUntil(lambda: not model._pending, timeout=5_000)
    timer.stop()
    # the GUI thread ran its heartbeat while the column filled: it saw it partly filled
    assert any(0 < n < N_LAYERS for n in seen), seen[:20]
    # the user sees numbers in every row, block rows show their lowest
    p = win.table.proxy
    sq = [p.index(r, 6).data() for r in range(p.rowCount())]
    assert all(t not in ("…", "") and "…" not in t for t in sq), sq
    lowest = min(ctl.layer_sqnr(f) for f in s.fqns if f.startswith("layers.4."))
    assert float(group_index(win, "layers.4").siblingAtColumn(6).data()) == pytest.approx(
        lowest, abs=0.051
    )
    # batched: far fewer repaint signals than values
    assert 0 < len(flushes) < N_LAYERS


def test_grouped_model_passes_the_qt_model_tester(qtbot, qtmodeltester):
    from models import block_stack_handle

    from quantviz.app import AppController
    from quantviz.gui.layer_table import LayerTableWidget

    ctl = AppController()
    table = LayerTableWidget(ctl)
    qtbot.addWidget(table)
    ctl.session.set_model(block_stack_handle(n_blocks=3, dim=16, hidden=32))
    assert table.model.grouped and table.model.rowCount() == 5  # embed, 3 blocks, lm_head
    qtmodeltester.check(table.model)
    table.filter.setText("v_proj|lm_head")
    qtmodeltester.check(table.proxy)
    assert table.visible_fqns() == [f"layers.{i}.self_attn.v_proj" for i in range(3)] + ["lm_head"]
