"""Every module outside quantviz.gui imports without Qt (checked in a fresh interpreter)."""

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import quantviz

def walk(pkg, prefix):
    for m in pkgutil.iter_modules(pkg.__path__, prefix):
        if m.name == "quantviz.gui" or m.name.endswith("__main__"):
            continue
        mod = importlib.import_module(m.name)
        yield m.name
        if m.ispkg:
            yield from walk(mod, m.name + ".")

names = list(walk(quantviz, "quantviz."))
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "superqt")
             or m.startswith("quantviz.gui"))
assert not bad, bad
print(len(names))
"""


def test_non_gui_modules_import_no_qt():
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    # the core, model, data, eval and io packages and their modules were all imported
    assert int(out.stdout.strip().splitlines()[-1]) >= 25
