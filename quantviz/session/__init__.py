"""Application state (no Qt): the evented :class:`Session` and the pure configuration edits."""

from quantviz.session.edits import (
    SIDES,
    Side,
    apply_to_all,
    copy_layer,
    reset_layers,
    set_layer_spec,
)
from quantviz.session.state import DEFAULT_CONFIG, ResultEntry, Session

__all__ = [
    "DEFAULT_CONFIG",
    "SIDES",
    "ResultEntry",
    "Session",
    "Side",
    "apply_to_all",
    "copy_layer",
    "reset_layers",
    "set_layer_spec",
]
