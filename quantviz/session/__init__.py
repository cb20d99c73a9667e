"""Application state (no Qt): the evented :class:`Session` and the pure configuration edits."""

from quantviz.session.edits import (
    SIDES,
    OverrideInfo,
    Side,
    apply_to_all,
    copy_layer,
    layers_matching,
    move_override,
    override_info,
    remove_override,
    reset_layers,
    set_layer_spec,
    set_pattern_spec,
)
from quantviz.session.state import DEFAULT_CONFIG, ResultEntry, Session, TunedWeights

__all__ = [
    "DEFAULT_CONFIG",
    "SIDES",
    "OverrideInfo",
    "ResultEntry",
    "Session",
    "Side",
    "TunedWeights",
    "apply_to_all",
    "copy_layer",
    "layers_matching",
    "move_override",
    "override_info",
    "remove_override",
    "reset_layers",
    "set_layer_spec",
    "set_pattern_spec",
]
