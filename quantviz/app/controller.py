"""The application controller: the session, every derived number and the job recipes.

:class:`AppController` sits between the state (:class:`~quantviz.session.Session`) and the
front-ends (the Qt window in :mod:`quantviz.gui`, the command line, scripts and tests). It
owns what is *derived* from the state — per-layer weight SQNR (:class:`SqnrTable`), the
fake-quantized weight cache, the float baseline, the last sensitivity analysis, the
histogram caches — and builds :class:`~quantviz.app.jobs.Job` objects for the long work:
open a model, open data, calibrate, evaluate a *named* configuration (without making it
current), uniform sweep, sensitivity, mixed precision, export. Jobs never change the session
from their worker thread: their ``on_done`` / ``on_item`` do, on the thread that runs the
front-end.

A model's forward passes are serialised by :attr:`model_lock`: an evaluation swaps the
model's weights for fake-quantized ones while it runs, so a calibration pass (or another
evaluation) waits for it.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from quantviz.app.activation import ActivationData, activation_data
from quantviz.app.jobs import Job, JobProgress, overall_progress, run_job
from quantviz.app.metrics import SqnrTable, Todo, compute_sqnr
from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.core.spec import ModelConfig, QuantSpec
from quantviz.session import ResultEntry, Session

__all__ = [
    "SENSITIVITY_BITS",
    "SWEEP_BITS",
    "AppController",
    "Opened",
    "config_of",
]

#: bit-widths of a uniform sweep and of the sensitivity analysis unless the user picks others
SWEEP_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
SENSITIVITY_BITS: tuple[int, ...] = (4,)
#: the exact Pareto front of a mixed-precision cost table is traced up to this many points
MIXED_FRONT_POINTS = 50_000


#: transforms computed without calibration data (inline for the views on small models)
DATA_FREE_TRANSFORMS = frozenset({"fold_bn", "cle", "hadamard"})
#: models up to this many parameters get their data-free transforms computed inline
INLINE_TRANSFORM_PARAMS = 5_000_000


@dataclass
class Opened:
    """A model (and its data) loaded by :meth:`AppController.open_model_job`."""

    handle: Any
    data_source: str | None
    data: Any


def config_of(result: Any, fallback: ModelConfig) -> ModelConfig:
    """The configuration an evaluation result was computed for."""
    cfg = getattr(result, "config", None)
    return cfg if isinstance(cfg, ModelConfig) else fallback


def _as_point(gen: Generator[Any, Any, Any], point: int, points: int) -> Generator[Any, Any, Any]:
    """Relay ``gen``, its progress events tagged as point ``point`` of ``points`` (one of
    several runs in one job); returns its value."""
    from quantviz.eval.results import relay_progress

    return relay_progress(gen, lambda p: replace(p, point=point, points=points))


def _sweep_run(
    gen: Generator[Any, Any, Any], run: int, runs: int, widths: int
) -> Generator[Any, Any, Any]:
    """Relay sweep ``run`` of ``runs`` (each of ``widths`` points) as points of one job (the
    shared float baseline's progress as it is)."""
    from quantviz.eval.results import relay_progress

    def recast(p: Any) -> Any:
        if runs == 1 or (p.stage == "baseline" and p.points == 1):
            return p
        return replace(p, point=run * widths + p.point, points=runs * widths)

    return relay_progress(gen, recast)


def _locked(lock: threading.Lock, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Run ``gen`` holding ``lock`` (released when it ends, fails or is closed)."""
    with lock:
        return (yield from gen)


#: weight SQNR of the layers still to do is computed on the caller's (GUI) thread when they
#: hold fewer elements than this, else in a worker
SQNR_INLINE_LIMIT = 2_000_000
#: ... and at most this many layers (300 small layers inline would stall the GUI thread)
SQNR_INLINE_LAYERS = 64


class AppController:
    """See the module docstring. ``session`` defaults to a new one."""

    def __init__(self, session: Session | None = None) -> None:
        from quantviz.core.layer_view import LayerViewCache
        from quantviz.eval import WeightCache

        self.session = session if session is not None else Session()
        self.sqnr = SqnrTable()
        self.weight_cache = WeightCache()
        self.layer_views = LayerViewCache()
        self.baseline: Any = None
        self.sens: Any = None
        #: the exact mixed-precision cost table and its exact front (mixed_cost_job)
        self.mixed_table: Any = None
        self.mixed_front: Any = None
        #: the last error-propagation result and proxy report (quantviz.eval.debug / proxies)
        self.debug_result: Any = None
        #: ... and of the same config without its transforms and rounding (None when it
        #: has none; quantviz.eval.before_after.plain_config)
        self.debug_plain: Any = None
        #: the last quantization-aware fine-tuning (quantviz.eval.qat.QatResult)
        self.qat_result: Any = None
        #: the name of the configuration the last fine-tuning created (None before one)
        self.qat_config: str | None = None
        self.proxy_report: Any = None
        self.model_lock = threading.Lock()
        #: True while a calibration job for the current model and data is under way
        self.collecting_stats = False
        #: calibration statistics captured under fine-tuned weights (weights tag -> fqn ->
        #: LayerStats; see :meth:`tuned_calibration_job`) and the tags being captured
        self.tuned_stats: dict[str, dict[str, Any]] = {}
        self.collecting_tuned: set[str] = set()
        #: weights tag -> why capturing its statistics failed (not tried again)
        self.tuned_stats_failed: dict[str, str] = {}
        #: address -> quantviz.eval.cluster.Cluster that sweeps were sent to (kept connected)
        self.clusters: dict[str, Any] = {}

    def _model_work(
        self, gen: Generator[Any, Any, Any], *, multi_point: bool = False
    ) -> Generator[Any, Any, Any]:
        """``gen`` run holding :attr:`model_lock`, its progress as the whole job's."""
        return overall_progress(_locked(self.model_lock, gen), multi_point=multi_point)

    # ------------------------------------------------------------------------------------
    # a Ray cluster for sweeps and sensitivity (quantviz.eval.cluster)
    # ------------------------------------------------------------------------------------
    def cluster(self, address: str) -> Any:
        """The :class:`~quantviz.eval.cluster.Cluster` at ``address`` (``local``, ``auto``,
        ``ray://HOST:PORT``; ``ValueError`` otherwise); it connects in the first job that
        uses it and stays connected for the next ones until :meth:`close_clusters`."""
        from quantviz.eval.cluster import Cluster, check_address

        address = check_address(address)
        c = self.clusters.get(address)
        if c is None:
            c = self.clusters[address] = Cluster(address)
        return c

    def close_clusters(self) -> None:
        """Disconnect every cluster (a ``local`` Ray this process started shuts down)."""
        clusters, self.clusters = list(self.clusters.values()), {}
        for c in clusters:
            c.close()

    # ------------------------------------------------------------------------------------
    # model and data
    # ------------------------------------------------------------------------------------
    def open_model_job(
        self,
        source: str,
        data: str | None = None,
        *,
        trust: bool = False,
        check: Callable[[Any], None] | None = None,
        after: Callable[[Any], None] | None = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> Job:
        """Load ``source`` (and ``data``, else the model's default data) off the session.
        The example input comes from ``input_shape``, the model file, or one sample of
        ``data``.

        ``check(handle)`` runs in the job (raise ``ValueError`` to refuse the model; nothing
        changes); ``after(handle)`` runs once the model is the session's. A model that needs
        trust raises :class:`quantviz.model.TrustRequired` from the job.
        """

        def recipe() -> Generator[Any, None, Opened]:
            from quantviz.data import load_data, load_model_for_data
            from quantviz.eval import Progress

            yield Progress(0, 2, "load model")
            handle = load_model_for_data(source, data, input_shape=input_shape, trust=trust)
            if check is not None:
                check(handle)
            yield Progress(1, 2, "load data")
            ds = data if data is not None else handle.default_data
            loaded = None if ds is None else load_data(ds, handle)
            yield Progress(2, 2, "load data")
            return Opened(handle, ds, loaded)

        def done(opened: Opened) -> Opened:
            self.adopt_model(opened)
            if after is not None:
                after(opened.handle)
            return opened

        meta = {"source": source, "open": {"data": data, "check": check, "after": after}}
        return Job("open model", f"Opening {source}…", recipe, done, meta=meta)

    def adopt_model(self, opened: Opened) -> None:
        """Make ``opened`` the session's model: caches and results start afresh."""
        from quantviz.core.layer_view import LayerViewCache
        from quantviz.eval import WeightCache

        self.sqnr.clear()
        self.tuned_stats, self.collecting_tuned, self.tuned_stats_failed = {}, set(), {}
        self.weight_cache = WeightCache()
        self.layer_views = LayerViewCache()
        self.baseline = None
        self.sens = None
        self.mixed_table = self.mixed_front = None
        self.debug_result = self.debug_plain = self.proxy_report = self.qat_result = None
        self.qat_config = None
        self.collecting_stats = opened.data is not None and self.activations_supported(
            opened.handle
        )
        s = self.session
        s.set_model(opened.handle, opened.data_source, opened.data)
        file_config = opened.handle.meta.get("file_config")
        if file_config is not None:  # an ONNX file holding QDQ: shown as it was quantized
            s.add_config("from file", file_config)
            s.make_current("from file")
            s.modified = False
        if opened.handle.layers:
            s.select([opened.handle.layers[0].fqn])

    def open_data_job(self, source: str) -> Job:
        """Load evaluation data ``source`` for the open model."""
        handle = self._need_handle()

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.data import load_data

            yield 0.0
            return load_data(source, handle)

        def done(data: Any) -> Any:
            self.baseline = None
            self.sens = None
            self.collecting_stats = self.activations_supported(handle)
            self.session.set_data(source, data)
            return data

        return Job("open data", f"Opening {source}…", recipe, done)

    @staticmethod
    def activations_supported(handle: Any) -> bool:
        return not AppController.activation_refusal(handle)

    @staticmethod
    def activation_refusal(handle: Any) -> str:
        """Why activations of ``handle`` cannot be observed or quantized ("" when they can)."""
        if handle is None or not handle.layers:
            return ""
        try:
            remove = handle.add_hooks(handle.layers[0].fqn, pre=lambda x: None)
        except ValueError as exc:
            return str(exc)
        remove()
        return ""

    # ------------------------------------------------------------------------------------
    # calibration statistics
    # ------------------------------------------------------------------------------------
    def calibration_job(self) -> Job | None:
        """Collect activation statistics of every layer (None when there is nothing to do:
        no data, or a model whose activations cannot be hooked)."""
        s = self.session
        handle, data = s.handle, s.data
        if handle is None or data is None or not self.activations_supported(handle):
            self.collecting_stats = False
            return None
        self.collecting_stats = True

        def recipe() -> Generator[Any, None, dict[str, Any]]:
            from quantviz.eval import calibrate

            stats: dict[str, Any] = {}
            yield from self._model_work(calibrate(handle, data, handle.fqns, stats))
            return stats

        def done(stats: dict[str, Any]) -> dict[str, Any]:
            if s.handle is handle and s.data is data:
                self.collecting_stats = False
                s.set_activation_stats(stats)
            return stats

        return Job("calibrate", "calibration statistics", recipe, done)

    def tuned_calibration_job(self, name: str | None = None) -> Job | None:
        """Collect the activation statistics of every layer with the fine-tuned weights of
        configuration ``name`` (current when None) in the model: what its static activation
        ranges are fitted to when it runs. None when there is nothing to do (not a
        fine-tuned configuration, statistics already there or being collected or failed
        before (:attr:`tuned_stats_failed`), no data, a model whose activations cannot be
        hooked). ``on_done`` files them under the
        weights' tag (:attr:`tuned_stats`) and tells the views."""
        s = self.session
        handle, data = s.handle, s.data
        tw = s.tuned.get(s.current_name if name is None else name)
        if (
            tw is None
            or tw.tag in self.tuned_stats
            or tw.tag in self.collecting_tuned
            or tw.tag in self.tuned_stats_failed
            or handle is None
            or data is None
            or not self.activations_supported(handle)
        ):
            return None
        tag = tw.tag
        self.collecting_tuned.add(tag)

        def recipe() -> Generator[Any, None, dict[str, Any]]:
            from quantviz.eval import calibrate
            from quantviz.eval.qat import swapped_weights

            stats: dict[str, Any] = {}

            def work() -> Generator[Any, None, None]:
                with swapped_weights(handle, tw):
                    yield from calibrate(handle, data, handle.fqns, stats)

            yield from self._model_work(work())
            return stats

        def done(stats: dict[str, Any]) -> dict[str, Any]:
            self.collecting_tuned.discard(tag)
            if s.handle is handle and s.data is data:
                self.tuned_stats[tag] = stats
                s.activation_stats_changed.emit(s.activation_stats)  # the views redraw
            return stats

        job = Job("calibrate", "calibration statistics (fine-tuned weights)", recipe, done)
        job.meta["tag"] = tag
        return job

    def stats_of(self, name: str | None = None) -> dict[str, Any] | None:
        """The calibration statistics configuration ``name`` (current when None) runs
        with: those of its fine-tuned weights for a fine-tuned configuration (None until
        captured), else the loaded weights' ones."""
        s = self.session
        tw = s.tuned.get(s.current_name if name is None else name)
        return s.activation_stats if tw is None else self.tuned_stats.get(tw.tag)

    def activation_view(self, fqn: str | None) -> ActivationData:
        """The activation panel's data for layer ``fqn`` under the current configuration
        (a fine-tuned configuration's: statistics captured with its weights)."""
        s = self.session
        if fqn is None or s.handle is None:
            return activation_data(None, None, None)
        spec = s.config.resolve(fqn).activation
        tag = s.weights_tag()
        if tag in self.tuned_stats_failed:
            why = self.tuned_stats_failed[tag]
            return ActivationData(fqn, "missing", f"No statistics of the fine-tuned weights: {why}")
        stats = self.stats_of()
        d = activation_data(
            fqn,
            None if stats is None else stats.get(fqn),
            spec,
            collecting=tag in self.collecting_tuned if tag else self.collecting_stats,
            unsupported=self.activation_refusal(s.handle),
        )
        # transforms are prepared on the loaded weights, not a fine-tuned configuration's
        if d.state == "ok" and s.config.transforms and not s.weights_tag():
            from quantviz.core.spec import transform_label

            try:
                st = self.transform_state(compute=False)
            except ValueError:
                st = None
            after = None if st is None else st.stats.get(fqn)
            if after is not None and after.input.count:
                d.after = activation_data(fqn, after, spec)
                d.after.label = f"after {transform_label(s.config.transforms)}"
                d.after_state = "ok"
            else:
                d.after_state = "pending"
        return d

    # ------------------------------------------------------------------------------------
    # weight SQNR and the histogram numbers
    # ------------------------------------------------------------------------------------
    def layer_sqnr(self, fqn: str) -> float | None:
        """Weight SQNR (dB) of ``fqn`` under the current configuration (None until known),
        on the weights it quantizes (a fine-tuned configuration's own)."""
        s = self.session
        return self.sqnr.get(fqn, s.config.resolve(fqn).weight, s.weights_tag())

    def sqnr_under(self, fqn: str, spec: QuantSpec | None, name: str | None = None) -> float | None:
        """The SQNR of ``fqn`` under ``spec`` on the weights of configuration ``name``
        (the loaded weights when None)."""
        tag = "" if name is None else self.session.weights_tag(name)
        return self.sqnr.get(fqn, spec, tag)

    def sqnr_todo(
        self,
        configs: Iterable[ModelConfig] | None = None,
        skip: Iterable[str] = (),
        names: Iterable[str] | None = None,
    ) -> list[Todo]:
        """``(fqn, spec)`` pairs of ``configs`` (default: the current one) whose weight SQNR
        is not known yet, without the layers in ``skip``. With ``names`` (configuration
        names, instead of ``configs``) or by default, a fine-tuned configuration's items are
        ``(fqn, spec, tag)``: measured on its own weights."""
        s = self.session
        skipped = set(skip)
        if configs is not None:
            todo = self.sqnr.missing(s.fqns, list(configs))
        else:
            todo = []
            for n in [s.current_name] if names is None else list(names):
                for t in self.sqnr.missing(s.fqns, [s.configs[n]], s.weights_tag(n)):
                    if t not in todo:
                        todo.append(t)
        return [t for t in todo if t[0] not in skipped]

    def sqnr_job(self, todo: list[Todo]) -> Job:
        """Compute the SQNR of ``todo`` (items arrive one layer at a time)."""
        s = self.session
        weights = dict(s.weights)
        tags = {t[2] for t in todo if len(t) > 2}
        tuned: dict[str, dict[str, Any]] = {}
        for tw in s.tuned.values():
            if tw.tag in tags and tw.tag not in tuned:
                tuned[tw.tag] = {f: tw.layer_weight(s.handle, f) for f in s.fqns}
        missing = tags - set(tuned)
        if missing:
            raise ValueError(f"layer SQNR: no fine-tuned weights {', '.join(sorted(missing))}")

        def item(x: Any) -> None:
            if isinstance(x, tuple) and len(x) in (3, 4):
                self.sqnr.record([x])

        def factory() -> Iterator[Any]:
            return compute_sqnr(weights, todo, tuned)

        return Job("layer SQNR", "layer SQNR", factory, on_item=item)

    def sqnr_inline(self, todo: list[Todo]) -> bool:
        """Whether ``todo`` is small enough to compute on the caller's thread."""
        h = self.session.handle
        if h is None or len(todo) > SQNR_INLINE_LAYERS:
            return h is None
        n = sum(h.layer(t[0]).weight_numel for t in todo)
        return n <= SQNR_INLINE_LIMIT

    def size_of(self, name: str | None = None) -> tuple[float, float]:
        """``(bytes, float bytes)`` of the model under configuration ``name`` (current when
        None); ``ValueError`` when a spec cannot apply to a layer."""
        from quantviz.eval import size_of

        s = self.session
        return size_of(self._need_handle(), s.config if name is None else s.configs[name])

    def layer_view(
        self,
        fqn: str,
        compare: str | None = None,
        channel: int = 0,
        spec: Any = ...,
        name: str | None = None,
    ) -> Any:
        """The histogram view's :class:`~quantviz.core.layer_view.HistData` of ``fqn`` under
        ``spec`` (default: configuration ``name``'s, the current one when None), of the
        weights that configuration quantizes (a fine-tuned configuration's own). Pure and
        thread-safe; pass the result to :meth:`record_layer_view` on the session's
        thread."""
        from quantviz.core.layer_view import layer_view

        s = self.session
        w = s.layer_weight(fqn, name)
        if spec is ...:
            cfg = s.config if name is None else s.configs[name]
            spec = cfg.resolve(fqn).weight
        d = layer_view(fqn, w, spec, compare, channel, self.layer_views)
        tag = s.weights_tag(name)
        if tag:
            d = replace(d, extra={**d.extra, "weights_tag": tag, "weights": "fine-tuned"})
        return d

    def record_layer_view(self, d: Any) -> None:
        """Store the SQNR a :meth:`layer_view` result measured (under its weights' tag)."""
        tag = d.extra.get("weights_tag", "")
        if d.main is not None:
            self.sqnr.record([(d.fqn, d.main.spec, d.main.sqnr_db, tag)])
        elif d.error and d.spec is not None:
            self.sqnr.record([(d.fqn, d.spec, math.nan, tag)])
        if d.compare is not None:
            self.sqnr.record([(d.fqn, d.compare.spec, d.compare.sqnr_db, tag)])

    def weight_numel(self, fqn: str) -> int:
        return int(self.session.weight(fqn).numel())

    # ------------------------------------------------------------------------------------
    # evaluation jobs
    # ------------------------------------------------------------------------------------
    def _need_handle(self) -> Any:
        if self.session.handle is None:
            raise ValueError("no model: open a model first")
        return self.session.handle

    def _need_data(self) -> tuple[Any, Any]:
        handle = self._need_handle()
        if self.session.data is None:
            raise ValueError("no data: open evaluation data first (File > Open data)")
        return handle, self.session.data

    def default_weight_spec(self, name: str | None = None) -> QuantSpec:
        """The default weight scheme of configuration ``name`` (current when None)."""
        s = self.session
        cfg = s.config if name is None else s.configs[name]
        return cfg.default.weight or DEFAULT_WEIGHT

    def evaluate_job(self, name: str | None = None) -> Job:
        """Evaluate configuration ``name`` (the current one when None) without making it
        current; the result is recorded under ``name`` with the configuration it had when
        the job started."""
        from quantviz.eval import check_config

        s = self.session
        handle, data = self._need_data()
        name = s.current_name if name is None else name
        if name not in s.configs:
            raise ValueError(f"config name: no configuration named {name!r}")
        config = s.configs[name]
        check_config(handle, config)
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline

        tuned = s.tuned.get(name)
        # a fine-tuned configuration's statistics: those the activation panel shows (the
        # same capture with its weights), else collected in the run
        tstats = dict(self.tuned_stats.get(tuned.tag, {})) if tuned is not None else {}

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import compute_baseline, evaluate
            from quantviz.eval.qat import swapped_weights

            def work() -> Generator[Any, None, Any]:
                base = baseline
                if base is None or not base.matches(handle.module, data.x):
                    base = yield from compute_baseline(handle, data)
                if tuned is None:
                    res = yield from evaluate(
                        handle, data, config, stats=stats, cache=cache, baseline=base, name=name
                    )
                else:  # fine-tuned weights: their own statistics, the float model's outputs
                    with swapped_weights(handle, tuned):
                        res = yield from evaluate(
                            handle, data, config, stats=tstats, baseline=base, name=name
                        )
                return base, res

            return (yield from self._model_work(work()))

        def done(payload: Any) -> ResultEntry:
            base, res = payload
            self.baseline = base
            # the SQNR table keys a fine-tuned configuration's numbers by its weights' tag
            self._record_result_sqnr(res, "" if tuned is None else tuned.tag)
            if name not in s.configs:  # deleted while it ran: keep what was measured
                s.add_config(name, config)
            return s.add_result(res, name=name, config=config)

        return Job("evaluate", f"Evaluating {name}", recipe, done, meta={"name": name})

    def _record_result_sqnr(self, res: Any, tag: str = "") -> None:
        cfg = config_of(res, ModelConfig())
        if cfg.transforms:
            # measured on the transformed weights: the table's key is the untransformed
            # weights' (the histogram shows the after-transform SQNR on its own line)
            return
        items = []
        for lay in getattr(res, "layers", []) or []:
            sq = lay.get("weight_sqnr_db")
            spec = cfg.resolve(lay["fqn"]).weight
            if sq is not None and spec is not None:
                items.append((lay["fqn"], spec, float(sq), tag))
        self.sqnr.record(items)

    def _series_item(self, kind: str, series: str, skip: Callable[[Any], bool] = lambda r: False):
        from quantviz.eval import PointDone

        def item(x: Any) -> None:
            if not isinstance(x, PointDone) or skip(x.result):
                return
            r = x.result
            cfg = config_of(r, self.session.config)
            self.session.add_result(
                r, name=r.name or f"{kind} {x.index}", config=cfg, series=series
            )

        return item

    def sweep_job(
        self,
        bits: Iterable[int] = SWEEP_BITS,
        spec: QuantSpec | None = None,
        cluster: str | None = None,
        remedies: str = "with",
    ) -> Job:
        """Every layer at ``spec`` (default: the current default weight scheme) at each of
        ``bits``; every run is its own named curve (series) on the trade-off plot.
        ``cluster`` (an address, see :meth:`cluster`): the points are Ray tasks there.

        ``remedies``: ``"with"`` the current config's transforms and ``spec``'s rounding
        (AdaRound / GPTQ), ``"without"`` neither (nearest rounding, no transforms),
        ``"both"`` one curve each (two series in one job; the same as ``"with"`` for a
        config that has no transforms and a nearest-rounding spec)."""
        from quantviz.core.spec import transform_label
        from quantviz.eval.sweeps import parse_bits

        if remedies not in ("with", "without", "both"):
            raise ValueError(f"remedies: must be with, without or both, got {remedies!r}")
        executor = None if cluster is None else self.cluster(cluster)

        s = self.session
        handle, data = self._need_data()
        widths = parse_bits(tuple(bits))
        spec = spec or self.default_weight_spec()
        act = s.config.default.activation
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline
        transforms = s.config.transforms
        has = bool(transforms) or spec.rounding != "nearest"
        plain_spec = spec.with_(rounding="nearest")
        runs: list[tuple[QuantSpec, tuple[Any, ...]]] = []
        if remedies in ("with", "both") or not has:
            runs.append((spec, transforms))
        if has and remedies in ("without", "both"):
            runs.append((plain_spec, ()))
        kind_of = {True: "with", False: "without"}
        series: dict[str, str] = {}
        labels = []
        for sp, tr in runs:
            label = f"uniform W{','.join(map(str, widths))} {sp.short().split(' ', 1)[1]}"
            if tr:  # with and without transforms are different curves
                label += f" + {transform_label(tr)}"
            elif has:
                label += " without transforms" if transforms else " nearest"
            key = kind_of[bool(tr) or sp.rounding != "nearest"]
            series[key] = s.unique_series(label)
            labels.append(label)

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import compute_baseline, uniform_sweep

            if executor is not None:
                executor.connect()

            def work() -> Generator[Any, None, Any]:
                base = baseline
                if len(runs) > 1 and (base is None or not base.matches(handle.module, data.x)):
                    base = yield from compute_baseline(handle, data)
                out = []
                for k, (sp, tr) in enumerate(runs):
                    gen = uniform_sweep(
                        handle,
                        data,
                        widths,
                        sp,
                        activation=act,
                        stats=stats,
                        cache=cache,
                        baseline=base,
                        transforms=tr,
                        executor=executor,
                    )
                    out.append((yield from _sweep_run(gen, k, len(runs), len(widths))))
                return out[0] if len(out) == 1 else out

            return (yield from self._model_work(work(), multi_point=True))

        from quantviz.eval import PointDone

        def item(x: Any) -> None:
            if not isinstance(x, PointDone):
                return
            r = x.result
            cfg = config_of(r, self.session.config)
            from quantviz.eval.before_after import has_remedies

            name = (
                series[kind_of[has_remedies(cfg)]]
                if len(series) > 1
                else next(iter(series.values()))
            )
            self.session.add_result(
                r, name=r.name or f"uniform sweep {x.index}", config=cfg, series=name
            )

        where = "" if cluster is None else f" on {cluster}"
        return Job(
            "uniform sweep",
            f"Uniform sweep {' and '.join(labels)} ({','.join(map(str, widths))} bits){where}",
            recipe,
            lambda r: r,
            item,
            meta={
                "series": next(iter(series.values())),
                "all_series": list(series.values()),
                "cluster": cluster,
            },
        )

    def methods_sweep_job(
        self,
        bits: Iterable[int] = SWEEP_BITS,
        methods: Iterable[str] | str = ("nearest", "gptq", "cle+bias_correction"),
        spec: QuantSpec | None = None,
        cluster: str | None = None,
    ) -> Job:
        """Every layer at ``spec`` (default: the current default weight scheme, its rounding
        replaced by each method's) at each of ``bits``, once per method (``nearest``,
        ``gptq``, ``cle+bias_correction`` ..., see :mod:`quantviz.core.methods`): one named
        curve (series) per method on the trade-off plot, all in one job. A method that does
        not apply to the model is skipped and named in ``meta["skipped"]`` (label -> reason)
        and in the result's ``skipped``. ``cluster``: the points are Ray tasks there."""
        from quantviz.core.methods import parse_methods
        from quantviz.eval.method_sweep import MethodSkipped, methods_sweep
        from quantviz.eval.sweeps import parse_bits

        ms = parse_methods(methods)
        executor = None if cluster is None else self.cluster(cluster)
        s = self.session
        handle, data = self._need_data()
        widths = parse_bits(tuple(bits))
        spec = spec or self.default_weight_spec()
        act = s.config.default.activation
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline
        scheme = spec.with_(rounding="nearest").short().split(" ", 1)[1]
        w = ",".join(map(str, widths))
        series = {
            (m.transforms, m.rounding): s.unique_series(f"uniform W{w} {scheme} {m.label}")
            for m in ms
        }
        skipped: dict[str, str] = {}

        def recipe() -> Generator[Any, None, Any]:
            if executor is not None:
                executor.connect()
            gen = methods_sweep(
                handle,
                data,
                widths,
                spec,
                ms,
                activation=act,
                stats=stats,
                cache=cache,
                baseline=baseline,
                executor=executor,
            )
            return (yield from self._model_work(gen, multi_point=True))

        from quantviz.eval import PointDone

        def item(x: Any) -> None:
            if isinstance(x, MethodSkipped):
                skipped[x.method.label] = x.reason
                return
            if not isinstance(x, PointDone):
                return
            r = x.result
            cfg = config_of(r, self.session.config)
            weight = cfg.default.weight
            key = (cfg.transforms, weight.rounding if weight is not None else "nearest")
            self.session.add_result(
                r, name=r.name or f"uniform sweep {x.index}", config=cfg, series=series[key]
            )

        where = "" if cluster is None else f" on {cluster}"
        return Job(
            "method sweep",
            f"Uniform sweep per method: {', '.join(m.label for m in ms)} ({w} bits){where}",
            recipe,
            lambda r: r,
            item,
            meta={
                "series": next(iter(series.values())),
                "all_series": list(series.values()),
                "methods": [m.label for m in ms],
                "skipped": skipped,
                "cluster": cluster,
            },
        )

    def sensitivity_job(
        self, bits: Iterable[int] = SENSITIVITY_BITS, cluster: str | None = None
    ) -> Job:
        """Each layer alone at ``bits`` (the default weight scheme), the rest float;
        ``cluster`` (an address): the measurements are Ray tasks there."""
        from quantviz.eval.sweeps import parse_bits

        executor = None if cluster is None else self.cluster(cluster)

        s = self.session
        handle, data = self._need_data()
        widths = parse_bits(tuple(bits))
        spec = self.default_weight_spec()
        cache, baseline, previous = self.weight_cache, self.baseline, self.sens

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import sensitivity

            if executor is not None:
                executor.connect()
            gen = sensitivity(
                handle,
                data,
                widths,
                spec,
                cache=cache,
                baseline=baseline,
                previous=previous,
                executor=executor,
            )
            return (yield from self._model_work(gen, multi_point=True))

        def done(res: Any) -> Any:
            self.sens = res
            s.set_sensitivity({ls.fqn: res.drop(ls.fqn, widths[0]) for ls in res.layers})
            return res

        where = "" if cluster is None else f" on {cluster}"
        label = f"Sensitivity at {','.join(map(str, widths))} bits{where}"
        return Job("sensitivity", label, recipe, done, meta={"cluster": cluster})

    def mixed_precision_job(
        self, budget: float = 0.0, bits: Iterable[int] = (2, 3, 4, 6, 8)
    ) -> Job:
        """Greedy per-layer bits under ``budget`` bytes (0: a sweep of six budgets)."""
        from quantviz.eval.sweeps import parse_bits

        s = self.session
        handle, data = self._need_data()
        widths = parse_bits(tuple(bits), field_name="candidate_bits")
        spec = self.default_weight_spec()
        budgets = None if budget <= 0 else [budget]
        stats = dict(s.activation_stats)
        cache, baseline, sens = self.weight_cache, self.baseline, self.sens
        series = s.unique_series("mixed precision")

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import mixed_precision

            gen = mixed_precision(
                handle,
                data,
                sens,
                budgets,
                widths,
                base_spec=spec,
                stats=stats,
                cache=cache,
                baseline=baseline,
            )
            return (yield from self._model_work(gen, multi_point=True))

        def done(res: Any) -> Any:
            self.sens = res.sensitivity
            return res

        # the sensitivity pass mixed precision runs first yields points too: not curve points
        item = self._series_item(
            "mixed precision", series, skip=lambda r: not r.name.startswith("mixed")
        )
        return Job("mixed precision", "Mixed precision", recipe, done, item, {"series": series})

    def debug_job(self, name: str | None = None) -> Job:
        """Error propagation (isolated and cumulative error per layer) of configuration
        ``name`` (the current one when None); the result goes to :attr:`debug_result`.
        A configuration with transforms or AdaRound / GPTQ rounding is also run without
        them (:func:`~quantviz.eval.before_after.plain_config`), into :attr:`debug_plain`."""
        from quantviz.eval import check_config

        s = self.session
        handle, data = self._need_data()
        name = s.current_name if name is None else name
        config = s.configs[name]
        check_config(handle, config)
        stats, cache = dict(s.activation_stats), self.weight_cache
        tuned = s.tuned.get(name)
        from quantviz.eval.before_after import has_remedies, plain_config

        # the same config without its remedies (not for fine-tuned weights: their own run)
        plain = plain_config(config) if tuned is None and has_remedies(config) else None

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval.debug import debug
            from quantviz.eval.qat import swapped_weights

            def both() -> Generator[Any, None, Any]:
                if tuned is not None:
                    # fine-tuned weights: their float model is the reference, their statistics
                    with swapped_weights(handle, tuned):
                        res = yield from debug(handle, data, config, cache=cache)
                    return res, None
                n = 1 if plain is None else 2
                gen = debug(handle, data, config, stats=stats, cache=cache)
                res = yield from _as_point(gen, 0, n)
                without = None
                if plain is not None:  # the same config with transforms and rounding removed
                    gen = debug(handle, data, plain, stats=dict(stats), cache=cache)
                    without = yield from _as_point(gen, 1, n)
                return res, without

            return (yield from self._model_work(both()))

        def done(payload: Any) -> Any:
            self.debug_result, self.debug_plain = payload
            return payload[0]

        what = f"Error propagation of {name}" + (" with and without its remedies" if plain else "")
        return Job("debug", what, recipe, done, meta={"name": name})

    def qat_job(self, name: str | None = None, options: Any = None) -> Job:
        """Quantization-aware fine-tuning of configuration ``name`` (the current one when
        None) with :class:`quantviz.eval.qat.QatOptions` ``options``. The fine-tuned weights
        are kept as a new configuration ``<name> qat-<method>`` (:attr:`Session.tuned`),
        evaluated, viewed and exported with them; both results go to the trade-off plot.
        The new configuration's name is the job's ``meta["new"]`` and :attr:`qat_config`
        once it is done."""
        from quantviz.eval import check_config
        from quantviz.eval.qat import QatOptions

        s = self.session
        handle, data = self._need_data()
        name = s.current_name if name is None else name
        if name not in s.configs:
            raise ValueError(f"config name: no configuration named {name!r}")
        config = s.configs[name]
        check_config(handle, config)
        options = options if options is not None else QatOptions()

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval.qat import finetune

            return (yield from self._model_work(finetune(handle, data, config, options, name=name)))

        meta: dict[str, Any] = {"name": name, "new": None}

        def done(res: Any) -> Any:
            new = s.unique_name(f"{name} qat-{options.method}")
            s.add_config(new, config)
            s.set_tuned(new, res.weights)
            s.add_result(res.before, name=name, config=config)
            s.add_result(res.after, name=new, config=config)
            self.qat_result = res
            self.qat_config = meta["new"] = new
            return res

        what = f"Fine-tuning {name} ({options.method})"
        return Job("qat", what, recipe, done, meta=meta)

    def proxies_job(
        self, bits: int = SENSITIVITY_BITS[0], proxies: Iterable[str] | None = None
    ) -> Job:
        """Sensitivity proxies of every layer at the default weight scheme with ``bits``,
        ranked against the measured single-layer drop; the report goes to
        :attr:`proxy_report`."""
        from quantviz.eval.proxies import GRADIENT_PROXIES, PROXIES

        handle, data = self._need_data()
        spec = self.default_weight_spec().with_(bits=bits)
        if proxies is None:  # by default those the model can compute (no gradients in ONNX)
            onnx = handle.flavour == "onnx"
            proxies = [p for p in PROXIES if not (onnx and p in GRADIENT_PROXIES)]
        names = tuple(proxies)
        cands = [(f, spec) for f in handle.fqns]
        cache, baseline = self.weight_cache, self.baseline

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval.proxies import rank_proxies

            gen = rank_proxies(handle, data, cands, names, cache=cache, baseline=baseline)
            return (yield from self._model_work(gen))

        def done(rep: Any) -> Any:
            self.proxy_report = rep
            return rep

        return Job("proxies", f"Sensitivity proxies at W{spec.short()}", recipe, done)

    def mixed_cost_job(self, choices: str, proxy: str = "mse") -> Job:
        """The exact mixed-precision cost table: ``proxy`` for every (layer, scheme) of the
        menu ``choices`` (see :mod:`quantviz.core.mixed_spec`), with the exact Pareto front
        of cost vs bytes where it is small enough (``meta["front"]`` after it ran). A
        generator with progress; cancelling stops it at the next candidate."""
        from quantviz.core.mixed_spec import parse_choices
        from quantviz.eval.mixed_exact import proxy_function

        schemes = parse_choices(choices)
        proxy_function(proxy)  # an unavailable proxy fails before the job starts
        handle = self._need_handle()
        data = self.session.data
        cache, baseline = self.weight_cache, self.baseline
        meta: dict[str, Any] = {"choices": choices, "proxy": proxy}

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval.mixed_exact import cost_table

            gen = cost_table(handle, data, schemes, proxy, cache=cache, baseline=baseline)
            table = yield from self._model_work(gen, multi_point=proxy != "mse")
            try:
                front = table.front(max_points=MIXED_FRONT_POINTS)
            except ValueError:  # too many non-dominated points: solve per budget instead
                front = None
            return table, front

        def done(payload: Any) -> Any:
            self.mixed_table, self.mixed_front = payload
            return payload

        return Job("mixed cost table", f"Mixed precision costs ({proxy})", recipe, done, meta=meta)

    def mixed_point_job(self, config: ModelConfig, name: str, series: str = "exact mixed") -> Job:
        """Evaluate one mixed-precision assignment ``config`` (not a named configuration);
        the result joins the trade-off plot as a point of ``series`` under ``name``."""
        from quantviz.eval import check_config

        s = self.session
        handle, data = self._need_data()
        check_config(handle, config)
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import compute_baseline, evaluate

            def work() -> Generator[Any, None, Any]:
                base = baseline
                if base is None or not base.matches(handle.module, data.x):
                    base = yield from compute_baseline(handle, data)
                res = yield from evaluate(
                    handle, data, config, stats=stats, cache=cache, baseline=base, name=name
                )
                return base, res

            return (yield from self._model_work(work()))

        def done(payload: Any) -> ResultEntry:
            base, res = payload
            self.baseline = base
            return s.add_result(res, name=name, config=config, series=series)

        return Job("mixed point", f"Evaluating {name}", recipe, done, meta={"name": name})

    # ------------------------------------------------------------------------------------
    # sessions and exports
    # ------------------------------------------------------------------------------------
    def session_data(self) -> Any:
        """The open session as :class:`quantviz.io.session_file.SessionData`."""
        from quantviz.io.session_file import SessionData

        s = self.session
        if s.handle is None:
            raise ValueError("open a model before saving a session")
        return SessionData(
            model=s.handle.source,
            data=s.data_source,
            configs=dict(s.configs),
            current=s.current_name,
            results=list(s.results),
            tuned=dict(s.tuned),
        )

    def save_session(self, path: str) -> None:
        """Write the session to ``path`` (atomically); it is no longer ``modified``."""
        run_job(self.save_session_job(path))

    def save_session_job(self, path: str) -> Job:
        """Write the session as it is now to ``path`` in the background: the recipe hashes
        and writes (atomically) the fine-tuned weights, then the session file, yielding
        monotone :class:`~quantviz.app.jobs.JobProgress`; closing it (a cancel) or a
        failure leaves the previous files as they were. ``on_done`` marks what was saved
        as unmodified (edits made while it ran stay unsaved) and returns ``path``.
        ``meta["written"]`` turns True when the files are in place (a cancel that came
        after the last yield did not stop the save: the front-end asks this)."""
        from quantviz.io.session_file import save_session_steps

        s = self.session
        data = self.session_data()  # a snapshot: configs are immutable, tensors not copied
        saved = s.snapshot()

        meta: dict[str, Any] = {"path": path, "written": False}

        def recipe() -> Generator[Any, None, str]:
            steps = save_session_steps(path, data)
            try:
                for p in steps:  # bytes shown as MB
                    big = p.total >= 1 << 20
                    yield JobProgress(
                        p.fraction,
                        f"{p.stage} (MB)" if big else p.stage,
                        p.done >> 20 if big else p.done,
                        p.total >> 20 if big else p.total,
                    )
            finally:
                steps.close()  # a cancel: the previous files stay
            meta["written"] = True  # past the last yield: the files are in place
            return path

        def done(out: str) -> str:
            s.mark_saved(saved)
            return out

        return Job("save session", f"Saving {os.path.basename(path)}", recipe, done, meta=meta)

    def open_session_job(self, path: str, *, trust: bool = False) -> Job:
        """Read session file ``path`` and reopen its model; its configurations and results
        replace the open session's only when everything loaded and fits."""
        from quantviz.io.session_file import load_session

        data = load_session(path)
        if not data.model:
            raise ValueError(f"{path}: model: the session names no model to open")
        if not data.configs:
            raise ValueError(f"{path}: configs: the session holds no configuration")

        def check(handle: Any) -> None:  # in the job, before anything changes
            for name, cfg in data.configs.items():
                unknown = cfg.unknown_keys(handle.fqns)
                if unknown:
                    raise ValueError(
                        f"{path}: configs.{name}: layers {', '.join(unknown)} are not in "
                        f"{handle.name}"
                    )
            params = dict(handle.module.named_parameters(remove_duplicate=False))
            for name, weights in data.tuned.items():
                for pname, t in weights.items():
                    p = params.get(pname)
                    if p is None or tuple(p.shape) != tuple(t.shape):
                        what = "no such parameter" if p is None else f"shape {tuple(p.shape)}"
                        raise ValueError(
                            f"{path}: tuned.{name}: {pname} {tuple(t.shape)} does not fit "
                            f"{handle.name} ({what})"
                        )

        def after(_handle: Any) -> None:
            self.session.restore(
                data.configs,
                data.current,
                [(r.name, r.config, r.result, r.series) for r in data.results],
                tuned=data.tuned,
            )

        job = self.open_model_job(data.model, data.data, trust=trust, check=check, after=after)
        job.kind = "open session"
        job.meta.update(path=path, session=data)
        return job

    # ------------------------------------------------------------------------------------
    # transforms (quantviz.eval.transforms)
    # ------------------------------------------------------------------------------------
    def transform_state(self, name: str | None = None, *, compute: bool = True) -> Any:
        """The transformed state of configuration ``name`` (current when None), or None.

        Taken from the states the last evaluations / transform jobs computed; a config
        whose transforms need no data (``fold_bn``, ``cle``, ``hadamard``) on a model of at
        most :data:`INLINE_TRANSFORM_PARAMS` parameters is computed here when ``compute``.
        """
        from quantviz.eval import run
        from quantviz.eval.transforms import (
            needs_transforms,
            prepare_transforms,
            rounding_layers,
            state_key,
        )

        s = self.session
        handle = s.handle
        cfg = s.config if name is None else s.configs[name]
        if handle is None or not needs_transforms(handle, cfg):
            return None
        calib = s.data.calib_x if s.data is not None else None
        store = self.weight_cache.transforms
        key = state_key(handle, cfg, calib)
        if name is None:  # the views show this one: later sweeps must not evict it
            store.pin(key)
        st = store.get(key)
        free = set(cfg.transform_names) <= DATA_FREE_TRANSFORMS
        if (
            st is None
            and compute
            and free
            and not rounding_layers(handle, cfg)
            and handle.total_params <= INLINE_TRANSFORM_PARAMS
        ):
            if not self.model_lock.acquire(blocking=False):
                return None  # a job is using the model: the views ask again when it ends
            try:
                st = run(prepare_transforms(handle, cfg, calib, store=store))
            finally:
                self.model_lock.release()
        return st

    def after_view(self, fqn: str, channel: int = 0, spec: Any = ...) -> Any:
        """The histogram data of layer ``fqn``'s weight after the current configuration's
        transforms (or, for an AdaRound / GPTQ layer, its rounded weight), with its grid;
        None when nothing changed that layer (or the state is not computed yet). Its
        ``extra`` holds ``label`` and the layer's ``notes``."""
        from quantviz.core.layer_view import layer_view

        s = self.session
        if spec is ...:
            spec = s.config.resolve(fqn).weight
        if s.weights_tag():  # transforms are prepared on the loaded weights, not these
            return None
        try:
            st = self.transform_state()
        except ValueError:
            return None
        if st is None or s.handle is None:
            return None
        w = st.weight(s.handle, fqn)
        label = "after transforms"
        if spec is not None and (fqn, spec) in st.rounded:
            w, label = st.rounded[(fqn, spec)], f"after {spec.rounding}"
        else:
            from quantviz.eval.transforms.state import param_name_of

            h = s.handle
            if param_name_of(h.module, h.layer(fqn).param_name) not in st.params:
                return None
        d = layer_view(f"{fqn}", w, spec, None, channel, None)
        d.extra["label"] = label
        d.extra["notes"] = list(st.notes.get(fqn, []))
        return d

    def transforms_job(self, name: str | None = None) -> Job:
        """Compute the transforms and AdaRound / GPTQ roundings of configuration ``name``
        (current when None) on the calibration data, for the views (histogram overlay,
        notes), and with evaluation data every layer's input activations under the
        transforms (the activation view's "after"); an evaluation reuses them."""
        from quantviz.eval.transforms import needs_transforms, prepare_transforms

        s = self.session
        handle = self._need_handle()
        name = s.current_name if name is None else name
        cfg = s.configs[name]
        if not needs_transforms(handle, cfg):
            raise ValueError(f"{name}: has no transforms and no AdaRound / GPTQ rounding")
        calib = s.data.calib_x if s.data is not None else None
        data, cache = s.data, self.weight_cache
        store = cache.transforms
        capture = data is not None and bool(cfg.transforms) and self.activations_supported(handle)

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval.before_after import transformed_activations

            if capture:  # and the layers' inputs under them (the activation view's "after")
                gen = transformed_activations(handle, data, cfg, cache=cache)
            else:
                gen = prepare_transforms(handle, cfg, calib, store=store)
            return (yield from self._model_work(gen))

        label = f"Transforms of {name}"
        return Job("transforms", label, recipe, lambda st: st, meta={"name": name})

    def config_for_export(self, name: str | None = None) -> ModelConfig:
        from dataclasses import replace

        s = self.session
        cfg = s.config if name is None else s.configs[name]
        if s.handle is not None and not cfg.model:
            cfg = replace(cfg, model=s.handle.source)
        return cfg
