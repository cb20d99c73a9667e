"""Application state, Qt-free and evented (psygnal).

A :class:`Session` holds the open model, the evaluation data, the named configurations (one
of which is *current*), evaluation results, per-layer sensitivities, activation statistics
and the selected layers. Every change emits a psygnal signal; the GUI only calls setters
(through :class:`quantviz.app.AppController`) and mirrors the signals into widgets
(napari's "widgets never own state"). Derived numbers (weight SQNR, caches, baselines) live
in the controller, not here.

Configurations are documents: editing the current configuration edits the named entry
``configs[current_name]``. Results are kept per configuration name together with the
configuration they were computed for.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from psygnal import Signal

from quantviz.core.defaults import DEFAULT_CONFIG
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.io.session_file import SavedResult
from quantviz.session.edits import apply_to_all, reset_layers, set_layer_spec

__all__ = ["DEFAULT_CONFIG", "ResultEntry", "Session", "TunedWeights"]


#: one evaluated configuration (the type session files store, one place for both)
ResultEntry = SavedResult

_TUNED_SERIAL = itertools.count(1)


class TunedWeights(dict):  # type: ignore[type-arg]
    """The fine-tuned float weights of a configuration (param name -> tensor, as
    :func:`quantviz.eval.qat.finetune` returns them), with a ``tag`` unique in this process:
    numbers measured on these weights (the SQNR table) are keyed by it, so they never mix
    with the loaded weights' numbers for the same scheme. Copies of a configuration share
    one object (same weights, same tag)."""

    def __init__(self, weights: Any = ()) -> None:
        super().__init__(weights)
        self.tag = f"tuned#{next(_TUNED_SERIAL)}"
        self._layers: dict[str, Any] = {}

    def layer_weight(self, handle: Any, fqn: str) -> Any:
        """Layer ``fqn``'s fine-tuned weight in the layout quantization reads (output
        channels on axis 0, like :meth:`Session.weight`); the loaded weight where these
        weights do not hold that parameter. The same tensor object each time (views cache
        by identity)."""
        w = self._layers.get(fqn)
        if w is None:
            lay = handle.layer(fqn)
            t = self.get(lay.param_name)
            w = handle.quant_weight(fqn).detach() if t is None else lay.to_quant(t).detach()
            self._layers[fqn] = w
        return w


class Session:
    """The app's state; every setter emits the matching signal (see the class attributes)."""

    #: the model handle changed (handle)
    model_changed = Signal(object)
    #: the data source changed (str or None)
    data_changed = Signal(object)
    #: the current configuration's content changed (ModelConfig)
    config_changed = Signal(object)
    #: the set / order / names of named configurations changed, or the content of one
    #: that is not current (:meth:`replace_config`)
    configs_changed = Signal()
    #: another named configuration became current (name)
    current_name_changed = Signal(str)
    #: results were added or cleared
    results_changed = Signal()
    #: per-layer sensitivities changed (dict fqn -> float)
    sensitivity_changed = Signal(object)
    #: activation statistics changed (dict fqn -> stats object)
    activation_stats_changed = Signal(object)
    #: the selected layers changed (tuple of fqns)
    selection_changed = Signal(tuple)

    def __init__(self) -> None:
        self.handle: Any = None
        self.weights: dict[str, Any] = {}
        self.data_source: str | None = None
        #: the loaded evaluation data (``quantviz.data.EvalData``) for ``data_source``
        self.data: Any = None
        self.configs: dict[str, ModelConfig] = {"default": DEFAULT_CONFIG}
        self.current_name: str = "default"
        self.results: list[ResultEntry] = []
        self.sensitivity: dict[str, float] = {}
        self.activation_stats: dict[str, Any] = {}
        self.selection: tuple[str, ...] = ()
        #: fine-tuned float weights of a configuration (name -> {param name: tensor}), from
        #: quantization-aware training: that configuration is evaluated and exported with them
        self.tuned: dict[str, TunedWeights] = {}
        self._saved: tuple[Any, ...] = ({}, ())
        self._forced = False
        self.modified = False

    # -- unsaved work -------------------------------------------------------------------
    @property
    def modified(self) -> bool:
        """True when the configurations or results differ from what was last saved or
        opened (an edit that was undone, or a configuration renamed back, is not a change).
        The window asks before this is thrown away."""
        return self._forced or (self.configs, tuple(self.results)) != self._saved

    @modified.setter
    def modified(self, value: bool) -> None:
        """``False``: what there is now counts as saved; ``True``: unsaved whatever it is."""
        self._forced = bool(value)
        if not value:
            self._saved = (dict(self.configs), tuple(self.results))

    def snapshot(self) -> tuple[Any, ...]:
        """What :attr:`modified` compares with, as it is now (give it to :meth:`mark_saved`
        when a save of this state finishes: edits made meanwhile stay unsaved)."""
        return (dict(self.configs), tuple(self.results))

    def mark_saved(self, snapshot: tuple[Any, ...]) -> None:
        """``snapshot`` (from :meth:`snapshot`) was saved: the session is unmodified unless
        it changed since."""
        self._forced = False
        self._saved = snapshot

    # -- model and data -------------------------------------------------------------------
    def set_model(self, handle: Any, data_source: str | None = None, data: Any = None) -> None:
        """Open ``handle`` (with loaded ``data`` for ``data_source``, if given):
        configurations, results and statistics start afresh."""
        self.handle = handle
        # the float weights, held apart from the module: an evaluation swaps the module's
        # parameters for fake-quantized ones while it runs (quantviz.eval.apply_config)
        self.weights = (
            {}
            if handle is None
            else {lay.fqn: handle.quant_weight(lay.fqn).detach() for lay in handle.layers}
        )
        self.data_source = data_source or getattr(handle, "default_data", None)
        self.data = data
        model = getattr(handle, "source", None)
        self.configs = {"default": replace(DEFAULT_CONFIG, model=model)}
        self.current_name = "default"
        self.results = []
        self.sensitivity = {}
        self.activation_stats = {}
        self.selection = ()
        self.tuned = {}
        self.modified = False
        self.model_changed.emit(handle)
        self.data_changed.emit(self.data_source)
        self.configs_changed.emit()
        self.current_name_changed.emit(self.current_name)
        self.config_changed.emit(self.config)
        self.results_changed.emit()
        self.sensitivity_changed.emit(self.sensitivity)
        self.selection_changed.emit(self.selection)

    def set_data(self, source: str | None, data: Any = None) -> None:
        """Use ``source`` (loaded as ``data``) for evaluation; old results are cleared."""
        if source == self.data_source and data is self.data:
            return
        self.data_source = source
        self.data = data
        self.results = []
        self.sensitivity = {}
        self.activation_stats = {}
        self.data_changed.emit(source)
        self.results_changed.emit()
        self.sensitivity_changed.emit(self.sensitivity)
        self.activation_stats_changed.emit(self.activation_stats)

    def weight(self, fqn: str) -> Any:
        """The float weight tensor of layer ``fqn`` as loaded (even while an evaluation
        has the module's parameters swapped for quantized ones), in the layout quantization
        reads (output channels on axis 0: ``ModelHandle.quant_weight``)."""
        try:
            return self.weights[fqn]
        except KeyError:
            raise ValueError(f"layer: no quantizable layer named {fqn!r}") from None

    def set_tuned(self, name: str, weights: Mapping[str, Any]) -> TunedWeights:
        """Configuration ``name`` is evaluated, viewed and exported with the fine-tuned
        ``weights`` (param name -> tensor); returns them as :class:`TunedWeights`."""
        self._check_name(name)
        tw = weights if isinstance(weights, TunedWeights) else TunedWeights(weights)
        self.tuned[name] = tw
        if name == self.current_name:
            self.config_changed.emit(self.config)  # the views show other weights now
        return tw

    def layer_weight(self, fqn: str, name: str | None = None) -> Any:
        """Layer ``fqn``'s float weight that configuration ``name`` (current when None)
        quantizes: its fine-tuned weight for a fine-tuned configuration, else
        :meth:`weight`."""
        tw = self.tuned.get(self.current_name if name is None else name)
        if tw is None:
            return self.weight(fqn)
        self.weight(fqn)  # an unknown layer: the same error
        return tw.layer_weight(self.handle, fqn)

    def weights_tag(self, name: str | None = None) -> str:
        """``""`` for a configuration on the loaded weights; the :attr:`TunedWeights.tag` of
        a fine-tuned one."""
        tw = self.tuned.get(self.current_name if name is None else name)
        return "" if tw is None else tw.tag

    @property
    def fqns(self) -> list[str]:
        return [] if self.handle is None else [lay.fqn for lay in self.handle.layers]

    # -- the current configuration ----------------------------------------------------------
    @property
    def config(self) -> ModelConfig:
        """The current configuration."""
        return self.configs[self.current_name]

    def set_config(self, config: ModelConfig, name: str | None = None) -> None:
        """Replace configuration ``name`` (default: the current one) and make it current."""
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config: must be a ModelConfig, got {type(config).__name__}")
        name = self.current_name if name is None else name
        if name not in self.configs:
            raise ValueError(f"config name: no configuration named {name!r}")
        if name != self.current_name:
            self.make_current(name)
        if self.configs[name] == config:
            return
        self.configs[name] = config
        self.config_changed.emit(config)

    def replace_config(self, name: str, config: ModelConfig) -> None:
        """Replace the content of configuration ``name`` without making it current."""
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config: must be a ModelConfig, got {type(config).__name__}")
        self._check_name(name)
        if self.configs[name] == config:
            return
        self.configs[name] = config
        if name == self.current_name:
            self.config_changed.emit(config)
        self.configs_changed.emit()

    def restore(
        self,
        configs: dict[str, ModelConfig],
        current: str | None = None,
        results: Iterable[tuple[str, ModelConfig, Any, str]] = (),
        tuned: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Replace every named configuration and result at once (opening a saved session).

        ``results`` are ``(name, config, result, series)``; ``current`` defaults to the first
        configuration; ``tuned`` maps configuration names to their fine-tuned weights.
        Everything is checked before anything changes.
        """
        configs = dict(configs)
        if not configs:
            raise ValueError("configs: a session needs at least one configuration")
        for name, cfg in configs.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"config name: must be a non-empty string, got {name!r}")
            if not isinstance(cfg, ModelConfig):
                raise ValueError(f"configs.{name}: must be a ModelConfig")
            unknown = cfg.unknown_keys(self.fqns) if self.handle is not None else []
            if unknown:
                raise ValueError(
                    f"configs.{name}: layers {', '.join(unknown)} are not in this model"
                )
        current = next(iter(configs)) if current is None else current
        if current not in configs:
            raise ValueError(f"current: {current!r} is not one of the configurations")
        kept: dict[str, TunedWeights] = {}
        made: dict[int, TunedWeights] = {}  # names sharing one weight set keep sharing it
        for name, w in (tuned or {}).items():
            if name not in configs:
                raise ValueError(f"tuned: {name!r} is not one of the configurations")
            if not isinstance(w, TunedWeights):
                w = made.setdefault(id(w), TunedWeights(w))
            kept[name] = w
        entries = [ResultEntry(name=n, config=c, result=r, series=s) for n, c, r, s in results]
        old_config = self.config
        self.configs = configs
        self.results = entries
        self.current_name = current
        self.tuned = kept
        self.modified = False
        self.configs_changed.emit()
        self.current_name_changed.emit(current)
        if self.config != old_config or current in kept:  # other weights: views redraw
            self.config_changed.emit(self.config)
        self.results_changed.emit()

    def set_layer_spec(self, fqns: Iterable[str], side: str, spec: QuantSpec | None) -> None:
        """Set the ``side`` ("weight"/"activation") spec of layers ``fqns`` (None = float)."""
        fqns = self._check_fqns(fqns)
        self.set_config(set_layer_spec(self.config, fqns, side, spec))

    def apply_to_all(self, side: str, spec: QuantSpec | None) -> None:
        """Set ``side`` to ``spec`` for every layer (the default and all overrides)."""
        self.set_config(apply_to_all(self.config, side, spec))

    def reset_layers(self, fqns: Iterable[str]) -> None:
        """Make layers ``fqns`` follow the default again."""
        self.set_config(reset_layers(self.config, self._check_fqns(fqns)))

    def layer_config(self, fqn: str) -> LayerConfig:
        return self.config.resolve(fqn)

    def is_changed(self, fqn: str) -> bool:
        """True when layer ``fqn`` differs from the configuration's default."""
        return self.config.resolve(fqn) != self.config.default

    def _check_fqns(self, fqns: Iterable[str]) -> list[str]:
        out = [fqns] if isinstance(fqns, str) else list(fqns)
        known = set(self.fqns)
        if self.handle is not None:
            for f in out:
                if f not in known:
                    raise ValueError(f"layer: no quantizable layer named {f!r}")
        return out

    # -- named configurations -----------------------------------------------------------
    @property
    def config_names(self) -> list[str]:
        return list(self.configs)

    def _check_new_name(self, name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("config name: must be a non-empty string")
        name = name.strip()
        if name in self.configs:
            raise ValueError(f"config name: {name!r} already exists")
        return name

    def _check_name(self, name: str) -> None:
        if name not in self.configs:
            raise ValueError(f"config name: no configuration named {name!r}")

    def unique_name(self, base: str) -> str:
        """``base``, or ``base (2)``, ``base (3)`` ... whichever is free."""
        if base not in self.configs:
            return base
        i = 2
        while f"{base} ({i})" in self.configs:
            i += 1
        return f"{base} ({i})"

    def save_as(self, name: str) -> str:
        """Snapshot the current configuration under ``name``; returns the name.

        A snapshot is a snapshot: the current configuration stays current, so later edits
        change it and not the copy.
        """
        name = self._check_new_name(name)
        self.configs[name] = self.config
        self.configs_changed.emit()
        return name

    def add_config(self, name: str, config: ModelConfig) -> None:
        """Add ``config`` under a new ``name`` (not made current)."""
        name = self._check_new_name(name)
        self.configs[name] = config
        self.configs_changed.emit()

    def rename(self, old: str, new: str) -> None:
        self._check_name(old)
        new = self._check_new_name(new)
        self.configs = {(new if k == old else k): v for k, v in self.configs.items()}
        if old in self.tuned:
            self.tuned[new] = self.tuned.pop(old)
        self.results = [replace(r, name=new) if r.name == old else r for r in self.results]
        if self.current_name == old:
            self.current_name = new
            self.current_name_changed.emit(new)
        self.configs_changed.emit()
        self.results_changed.emit()

    def duplicate(self, name: str, new: str | None = None) -> str:
        """Copy configuration ``name`` (to ``new`` or ``name (copy)``); returns the new name."""
        self._check_name(name)
        new = self.unique_name(f"{name} (copy)") if new is None else self._check_new_name(new)
        self.configs[new] = self.configs[name]
        if name in self.tuned:
            self.tuned[new] = self.tuned[name]
        self.configs_changed.emit()
        return new

    def delete(self, name: str) -> None:
        """Delete configuration ``name``; the last one cannot be deleted."""
        self._check_name(name)
        if len(self.configs) == 1:
            raise ValueError(f"config name: cannot delete {name!r}, the only configuration")
        names = list(self.configs)
        del self.configs[name]
        self.tuned.pop(name, None)
        self.results = [r for r in self.results if r.name != name]
        if self.current_name == name:
            i = min(names.index(name), len(names) - 2)
            self.current_name = list(self.configs)[i]
            self.current_name_changed.emit(self.current_name)
            self.config_changed.emit(self.config)
        self.configs_changed.emit()
        self.results_changed.emit()

    def make_current(self, name: str) -> None:
        self._check_name(name)
        if name == self.current_name:
            return
        old, old_weights = self.config, self.tuned.get(self.current_name)
        self.current_name = name
        self.current_name_changed.emit(name)
        # the same scheme on other (fine-tuned) weights is another view too
        if self.config != old or self.tuned.get(name) is not old_weights:
            self.config_changed.emit(self.config)

    def adopt(self, entry: ResultEntry) -> str:
        """Make the configuration of a result current, adding it under its name if new.

        A result of a fine-tuned configuration was measured on its fine-tuned weights: when
        that configuration's scheme has been edited since, the configuration added for the
        result keeps those weights (shared, like a copy's), so it is what was measured
        (the result's scheme on the fine-tuned weights), not the scheme on the loaded
        weights. :meth:`adopted_weights_of` tells a front-end to say so."""
        if entry.name in self.configs and self.configs[entry.name] == entry.config:
            self.make_current(entry.name)
            return entry.name
        name = entry.name if entry.name not in self.configs else self.unique_name(entry.name)
        tuned = self.tuned.get(entry.name)
        self.add_config(name, entry.config)
        if tuned is not None:
            self.tuned[name] = tuned
        self.make_current(name)
        return name

    def adopted_weights_of(self, name: str) -> str | None:
        """The configuration whose fine-tuned weights configuration ``name`` shares (the
        first other name with the same weights), or None."""
        tw = self.tuned.get(name)
        if tw is None:
            return None
        return next((n for n, w in self.tuned.items() if w is tw and n != name), None)

    # -- results --------------------------------------------------------------------------
    def add_result(
        self,
        result: Any,
        name: str | None = None,
        config: ModelConfig | None = None,
        series: str = "evaluations",
    ) -> ResultEntry:
        """Record an evaluation of ``config`` (default: the current one) under ``name``."""
        name = self.current_name if name is None else name
        config = self.configs.get(name, self.config) if config is None else config
        entry = ResultEntry(name=name, config=config, result=result, series=series)
        self.results.append(entry)
        self.results_changed.emit()
        return entry

    def clear_results(self, series: str | None = None) -> None:
        """Remove the results of ``series`` (every result when None)."""
        self.results = [r for r in self.results if series is not None and r.series != series]
        self.results_changed.emit()

    @property
    def series(self) -> list[str]:
        """The names of the result series (curves), in the order they first appeared."""
        return list(dict.fromkeys(r.series for r in self.results))

    def unique_series(self, base: str) -> str:
        """``base``, or ``base #2``, ``base #3`` ... whichever no result uses yet: every sweep
        is its own curve, kept until the user removes it."""
        used = set(self.series)
        if base not in used:
            return base
        i = 2
        while f"{base} #{i}" in used:
            i += 1
        return f"{base} #{i}"

    def results_for(self, name: str) -> list[ResultEntry]:
        return [r for r in self.results if r.name == name]

    @property
    def baseline(self) -> float | None:
        """The float model's metric value, from the latest result carrying one."""
        for r in reversed(self.results):
            b = getattr(r.result, "baseline", None)
            if b is not None and math.isfinite(float(b)):
                return float(b)
        return None

    def set_sensitivity(self, values: dict[str, float]) -> None:
        self.sensitivity = dict(values)
        self.sensitivity_changed.emit(self.sensitivity)

    def set_activation_stats(self, stats: dict[str, Any]) -> None:
        self.activation_stats = dict(stats)
        self.activation_stats_changed.emit(self.activation_stats)

    # -- selection ------------------------------------------------------------------------
    def select(self, fqns: Iterable[str]) -> None:
        sel = tuple(self._check_fqns(fqns))
        if sel == self.selection:
            return
        self.selection = sel
        self.selection_changed.emit(sel)
