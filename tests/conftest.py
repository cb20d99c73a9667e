"""Test-wide settings: Qt offscreen and pyside6 for pytest-qt (set before any Qt import)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTEST_QT_API", "pyside6")

try:  # hypothesis is a test dependency of both CI environments
    from hypothesis import settings

    # CI runs a fixed set of examples (reproducible); local runs explore new ones each time.
    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass
