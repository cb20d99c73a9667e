"""Calibration statistics cached per (model, data, calibration settings), by content.

A sweep with static activation specs calibrates once: one float pass over ``calib_x``.
:data:`STATS_CACHE` keeps the statistics of the last few (model, data, settings) so a
repeated sweep — in this process or on a cluster, which is sent the cached statistics —
skips that pass. The key is a hash of what the statistics depend on: the model's
architecture (module types and names) and every parameter and buffer, the calibration
inputs and the batch size; two models or data sets with the same content share an entry.
The cache holds at most ``max_entries`` entries (least recently used first out).

Hashing reads every weight once per model object (the digest is remembered for the module
while it lives; quantviz never changes a model's weights in place).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["STATS_CACHE", "StatsCache", "model_digest", "tensor_digest"]

_model_digests: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _update(h: Any, t: torch.Tensor) -> None:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    flat = t.contiguous().reshape(-1)
    if flat.numel():
        h.update(flat.view(torch.uint8).numpy())


def tensor_digest(t: torch.Tensor) -> str:
    """A content hash of ``t`` (dtype, shape and values)."""
    h = hashlib.blake2b(digest_size=16)
    _update(h, t)
    return h.hexdigest()


def model_digest(module: torch.nn.Module) -> str:
    """A content hash of ``module``: its submodules' names and types, every parameter and
    buffer (remembered for the module object while it lives)."""
    with _lock:
        known = _model_digests.get(module)
    if known is not None:
        return known
    h = hashlib.blake2b(digest_size=16)
    for name, sub in module.named_modules():
        h.update(f"{name}:{type(sub).__qualname__};".encode())
    state = module.state_dict(keep_vars=True)
    for name in sorted(state):
        h.update(name.encode())
        _update(h, state[name])
    digest = h.hexdigest()
    with _lock:
        _model_digests[module] = digest
    return digest


class StatsCache:
    """Bounded LRU: key -> the statistics dict (fqn -> LayerStats) for that key.

    :meth:`entry` returns the *same* dict for the same key; calibration fills it
    (:func:`quantviz.eval.calibrate` adds only complete statistics), so the next sweep
    finds them there.
    """

    def __init__(self, max_entries: int = 8) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, dict[str, LayerStats]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(handle: ModelHandle, data: EvalData, batch_size: int) -> str:
        """What the statistics of ``handle`` on ``data`` depend on, hashed."""
        return "|".join(
            (
                model_digest(handle.module),
                tensor_digest(data.calib_x),
                f"bs={batch_size}",
            )
        )

    def entry(self, key: str) -> dict[str, LayerStats]:
        with self._lock:
            d = self._entries.get(key)
            if d is None:
                d = self._entries[key] = {}
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return d

    def stats_for(self, handle: ModelHandle, data: EvalData, batch_size: int) -> dict[str, Any]:
        """The cached statistics dict of ``handle`` on ``data`` (empty until calibrated)."""
        return self.entry(self.key(handle, data, batch_size))

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: the process's cache (sweeps use it when they are not given statistics)
STATS_CACHE = StatsCache()
