"""Layers grouped by numbered block, for the inspector (no Qt).

``model.layers.3.self_attn.q_proj`` belongs to block ``model.layers.3`` (shown as
``layers.3``): the name up to its first numbered component that is not the last one. A block
of one layer is no block (the layer stays at the top level), so models without repeated
blocks (the digit samples: ``conv1``, ``fc2``) stay flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["LayerGroup", "block_of", "group_layers"]


def block_of(fqn: str) -> str | None:
    """The numbered block ``fqn`` sits in (``model.layers.3``), or None."""
    parts = fqn.split(".")
    for i in range(1, len(parts) - 1):
        if parts[i].isdigit():
            return ".".join(parts[: i + 1])
    return None


@dataclass
class LayerGroup:
    """One block: ``key`` its full name prefix, ``label`` what the table shows, ``members``
    the indices of its layers in the model's layer list (model order)."""

    key: str
    label: str
    members: list[int] = field(default_factory=list)

    def child_name(self, fqn: str) -> str:
        """``fqn`` relative to the block (``self_attn.q_proj``)."""
        return fqn[len(self.key) + 1 :] if fqn.startswith(self.key + ".") else fqn


def group_layers(fqns: Sequence[str]) -> list[int | LayerGroup]:
    """The top level of the inspector for layers ``fqns`` (model order): each item a layer
    index (a layer outside any block) or a :class:`LayerGroup`, in order of first appearance.
    Empty blocks never appear; with no block of two or more layers every item is an index."""
    keys = [block_of(f) for f in fqns]
    count: dict[str, int] = {}
    for k in keys:
        if k is not None:
            count[k] = count.get(k, 0) + 1
    groups: dict[str, LayerGroup] = {}
    top: list[int | LayerGroup] = []
    for i, k in enumerate(keys):
        if k is None or count[k] < 2:
            top.append(i)
            continue
        g = groups.get(k)
        if g is None:
            g = groups[k] = LayerGroup(k, _short(k))
            top.append(g)
        g.members.append(i)
    # a short label that two blocks share (encoder.layer.0 / decoder.layer.0): full names
    seen: dict[str, int] = {}
    for g in groups.values():
        seen[g.label] = seen.get(g.label, 0) + 1
    for g in groups.values():
        if seen[g.label] > 1:
            g.label = g.key
    return top


def _short(key: str) -> str:
    """``model.layers.3`` -> ``layers.3`` (the container and the block number)."""
    return ".".join(key.split(".")[-2:])
