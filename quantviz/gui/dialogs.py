"""Small dialogs and texts of the main window: unsaved work, the architecture of a weights
file, About and the quick guide."""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QMessageBox, QWidget

__all__ = ["about_text", "ask_architecture", "ask_unsaved", "help_text"]


def ask_unsaved(parent: QWidget) -> str:
    """Ask what to do with unsaved configurations/results: ``save``, ``discard`` or ``cancel``."""
    box = QMessageBox(parent)
    box.setObjectName("unsavedBox")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("quantviz")
    box.setText("<b>Save the session before closing?</b>")
    box.setInformativeText(
        "The configurations or results changed since the session was last saved; they are "
        "lost if you close without saving."
    )
    box.setStandardButtons(
        QMessageBox.StandardButton.Save
        | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Cancel
    )
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    if answer == QMessageBox.StandardButton.Save:
        return "save"
    if answer == QMessageBox.StandardButton.Discard:
        return "discard"
    return "cancel"


def ask_architecture(parent: QWidget, path: str) -> str | None:
    """Ask for the ``package.module:factory`` that builds the module a weights file fills."""
    text, ok = QInputDialog.getText(
        parent,
        "Architecture of the weights",
        f"{path} holds only weights (a state_dict).\n"
        "Give the function that builds the model, as package.module:factory\n"
        "(an installed package; code from other folders needs --trust):",
    )
    text = text.strip()
    return text if ok and text else None


def about_text() -> str:
    from quantviz import __version__

    return (
        f"<h3>quantviz {__version__}</h3>"
        "<p>See what quantization does to a neural network: per-layer weight and activation "
        "histograms with the quantization grid drawn over them, live error numbers, "
        "fake-quantized evaluation and the accuracy-vs-memory trade-off.</p>"
        "<p>Vocabulary after Gholami et al., <i>A Survey of Quantization Methods for "
        "Efficient Neural Network Inference</i> (2021). MIT licence.</p>"
    )


def help_text() -> str:
    return (
        "<h3>Quick guide</h3><ol>"
        "<li><b>Pick a layer</b> in the table (left): its weights and the quantization grid "
        "appear in the centre, its input activations on the right.</li>"
        "<li><b>Change the scheme</b> with the controls (right): bits, quantizer, symmetric, "
        "granularity, calibration. Every edit redraws at once and is undoable (Ctrl+Z, "
        "Ctrl+Shift+Z / Ctrl+Y).</li>"
        "<li><b>Evaluate</b> (F5) the current configuration; <b>Uniform sweep</b> draws a "
        "curve per run (remove curves in View), <b>Sensitivity</b> fills the Sens. column, "
        "<b>Mixed precision</b> allocates bits under the budget.</li>"
        "<li><b>Save as…</b> snapshots a configuration; <b>Compare</b> (Ctrl+K) puts "
        "configurations side by side; <b>Export</b> (Ctrl+E) writes JSON, YAML, safetensors, "
        "ONNX, AIMET or an HTML report.</li></ol>"
        "<p>Clipped %: the share of values outside the grid's outermost levels. Under min/max "
        "calibration a few values still clip, as in torch.ao: a symmetric scale is "
        "max|x| / 127.5 at 8 bits, half a step short of the largest positive value (codes "
        "stop at +127), and an asymmetric grid's zero point is rounded to an integer, "
        "shifting the grid by up to half a step.</p>"
    )
