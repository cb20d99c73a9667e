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
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from quantviz.app.activation import ActivationData, activation_data
from quantviz.app.jobs import Job, overall_progress
from quantviz.app.metrics import SqnrTable, compute_sqnr
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
        #: the last error-propagation result and proxy report (quantviz.eval.debug / proxies)
        self.debug_result: Any = None
        #: the last quantization-aware fine-tuning (quantviz.eval.qat.QatResult)
        self.qat_result: Any = None
        self.proxy_report: Any = None
        self.model_lock = threading.Lock()
        #: True while a calibration job for the current model and data is under way
        self.collecting_stats = False

    def _model_work(
        self, gen: Generator[Any, Any, Any], *, multi_point: bool = False
    ) -> Generator[Any, Any, Any]:
        """``gen`` run holding :attr:`model_lock`, its progress as the whole job's."""
        return overall_progress(_locked(self.model_lock, gen), multi_point=multi_point)

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
        self.weight_cache = WeightCache()
        self.layer_views = LayerViewCache()
        self.baseline = None
        self.sens = None
        self.debug_result = self.proxy_report = self.qat_result = None
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

    def activation_view(self, fqn: str | None) -> ActivationData:
        """The activation panel's data for layer ``fqn`` under the current configuration."""
        s = self.session
        if fqn is None or s.handle is None:
            return activation_data(None, None, None)
        spec = s.config.resolve(fqn).activation
        return activation_data(
            fqn,
            s.activation_stats.get(fqn),
            spec,
            collecting=self.collecting_stats,
            unsupported=self.activation_refusal(s.handle),
        )

    # ------------------------------------------------------------------------------------
    # weight SQNR and the histogram numbers
    # ------------------------------------------------------------------------------------
    def layer_sqnr(self, fqn: str) -> float | None:
        """Weight SQNR (dB) of ``fqn`` under the current configuration (None until known)."""
        return self.sqnr.get(fqn, self.session.config.resolve(fqn).weight)

    def sqnr_under(self, fqn: str, spec: QuantSpec | None) -> float | None:
        return self.sqnr.get(fqn, spec)

    def sqnr_todo(
        self, configs: Iterable[ModelConfig] | None = None, skip: Iterable[str] = ()
    ) -> list[tuple[str, QuantSpec]]:
        """``(fqn, spec)`` pairs of ``configs`` (default: the current one) whose weight SQNR
        is not known yet, without the layers in ``skip``."""
        s = self.session
        cfgs = [s.config] if configs is None else list(configs)
        skipped = set(skip)
        return [t for t in self.sqnr.missing(s.fqns, cfgs) if t[0] not in skipped]

    def sqnr_job(self, todo: list[tuple[str, QuantSpec]]) -> Job:
        """Compute the SQNR of ``todo`` (items arrive one layer at a time)."""
        weights = dict(self.session.weights)

        def item(x: Any) -> None:
            if isinstance(x, tuple) and len(x) == 3:
                self.sqnr.record([x])

        return Job("layer SQNR", "layer SQNR", lambda: compute_sqnr(weights, todo), on_item=item)

    def sqnr_inline(self, todo: list[tuple[str, QuantSpec]]) -> bool:
        """Whether ``todo`` is small enough to compute on the caller's thread."""
        h = self.session.handle
        if h is None or len(todo) > SQNR_INLINE_LAYERS:
            return h is None
        n = sum(h.layer(f).weight_numel for f, _ in todo)
        return n <= SQNR_INLINE_LIMIT

    def size_of(self, name: str | None = None) -> tuple[float, float]:
        """``(bytes, float bytes)`` of the model under configuration ``name`` (current when
        None); ``ValueError`` when a spec cannot apply to a layer."""
        from quantviz.eval import size_of

        s = self.session
        return size_of(self._need_handle(), s.config if name is None else s.configs[name])

    def layer_view(
        self, fqn: str, compare: str | None = None, channel: int = 0, spec: Any = ...
    ) -> Any:
        """The histogram view's :class:`~quantviz.core.layer_view.HistData` of ``fqn`` under
        ``spec`` (default: the current configuration's). Pure and thread-safe; pass the
        result to :meth:`record_layer_view` on the session's thread."""
        from quantviz.core.layer_view import layer_view

        s = self.session
        w = s.weight(fqn)
        if spec is ...:
            spec = s.config.resolve(fqn).weight
        return layer_view(fqn, w, spec, compare, channel, self.layer_views)

    def record_layer_view(self, d: Any) -> None:
        """Store the SQNR a :meth:`layer_view` result measured."""
        if d.main is not None:
            self.sqnr.record([(d.fqn, d.main.spec, d.main.sqnr_db)])
        elif d.error and d.spec is not None:
            self.sqnr.record([(d.fqn, d.spec, math.nan)])
        if d.compare is not None:
            self.sqnr.record([(d.fqn, d.compare.spec, d.compare.sqnr_db)])

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
                        res = yield from evaluate(handle, data, config, baseline=base, name=name)
                return base, res

            return (yield from self._model_work(work()))

        def done(payload: Any) -> ResultEntry:
            base, res = payload
            self.baseline = base
            self._record_result_sqnr(res)
            if name not in s.configs:  # deleted while it ran: keep what was measured
                s.add_config(name, config)
            return s.add_result(res, name=name, config=config)

        return Job("evaluate", f"Evaluating {name}", recipe, done, meta={"name": name})

    def _record_result_sqnr(self, res: Any) -> None:
        cfg = config_of(res, ModelConfig())
        items = []
        for lay in getattr(res, "layers", []) or []:
            sq = lay.get("weight_sqnr_db")
            spec = cfg.resolve(lay["fqn"]).weight
            if sq is not None and spec is not None:
                items.append((lay["fqn"], spec, float(sq)))
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

    def sweep_job(self, bits: Iterable[int] = SWEEP_BITS, spec: QuantSpec | None = None) -> Job:
        """Every layer at ``spec`` (default: the current default weight scheme) at each of
        ``bits``; every run is its own named curve (series) on the trade-off plot."""
        from quantviz.eval.sweeps import parse_bits

        s = self.session
        handle, data = self._need_data()
        widths = parse_bits(tuple(bits))
        spec = spec or self.default_weight_spec()
        act = s.config.default.activation
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline
        label = f"uniform W{','.join(map(str, widths))} {spec.short().split(' ', 1)[1]}"
        series = s.unique_series(label)

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import uniform_sweep

            gen = uniform_sweep(
                handle,
                data,
                widths,
                spec,
                activation=act,
                stats=stats,
                cache=cache,
                baseline=baseline,
            )
            return (yield from self._model_work(gen, multi_point=True))

        return Job(
            "uniform sweep",
            f"Uniform sweep {label} ({','.join(map(str, widths))} bits)",
            recipe,
            lambda r: r,
            self._series_item("uniform sweep", series),
            meta={"series": series},
        )

    def sensitivity_job(self, bits: Iterable[int] = SENSITIVITY_BITS) -> Job:
        """Each layer alone at ``bits`` (the default weight scheme), the rest float."""
        from quantviz.eval.sweeps import parse_bits

        s = self.session
        handle, data = self._need_data()
        widths = parse_bits(tuple(bits))
        spec = self.default_weight_spec()
        cache, baseline, previous = self.weight_cache, self.baseline, self.sens

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval import sensitivity

            gen = sensitivity(
                handle, data, widths, spec, cache=cache, baseline=baseline, previous=previous
            )
            return (yield from self._model_work(gen, multi_point=True))

        def done(res: Any) -> Any:
            self.sens = res
            s.set_sensitivity({ls.fqn: res.drop(ls.fqn, widths[0]) for ls in res.layers})
            return res

        return Job("sensitivity", f"Sensitivity at {','.join(map(str, widths))} bits", recipe, done)

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
        ``name`` (the current one when None); the result goes to :attr:`debug_result`."""
        from quantviz.eval import check_config

        s = self.session
        handle, data = self._need_data()
        name = s.current_name if name is None else name
        config = s.configs[name]
        check_config(handle, config)
        stats, cache = dict(s.activation_stats), self.weight_cache

        def recipe() -> Generator[Any, None, Any]:
            from quantviz.eval.debug import debug

            gen = debug(handle, data, config, stats=stats, cache=cache)
            return (yield from self._model_work(gen))

        def done(res: Any) -> Any:
            self.debug_result = res
            return res

        return Job("debug", f"Error propagation of {name}", recipe, done, meta={"name": name})

    def qat_job(self, name: str | None = None, options: Any = None) -> Job:
        """Quantization-aware fine-tuning of configuration ``name`` (the current one when
        None) with :class:`quantviz.eval.qat.QatOptions` ``options``. The fine-tuned weights
        are kept as a new configuration ``<name> qat-<method>`` (:attr:`Session.tuned`),
        evaluated and exported with them; both results go to the trade-off plot."""
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

        def done(res: Any) -> Any:
            new = s.unique_name(f"{name} qat-{options.method}")
            s.add_config(new, config)
            s.tuned[new] = res.weights
            s.add_result(res.before, name=name, config=config)
            s.add_result(res.after, name=new, config=config)
            self.qat_result = res
            return res

        what = f"Fine-tuning {name} ({options.method})"
        return Job("qat", what, recipe, done, meta={"name": name})

    def proxies_job(
        self, bits: int = SENSITIVITY_BITS[0], proxies: Iterable[str] | None = None
    ) -> Job:
        """Sensitivity proxies of every layer at the default weight scheme with ``bits``,
        ranked against the measured single-layer drop; the report goes to
        :attr:`proxy_report`."""
        from quantviz.eval.proxies import PROXIES

        handle, data = self._need_data()
        spec = self.default_weight_spec().with_(bits=bits)
        names = tuple(PROXIES if proxies is None else proxies)
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
        )

    def save_session(self, path: str) -> None:
        """Write the session to ``path`` (atomically); it is no longer ``modified``."""
        from quantviz.io.session_file import save_session

        save_session(path, self.session_data())
        self.session.modified = False

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

        def after(_handle: Any) -> None:
            self.session.restore(
                data.configs,
                data.current,
                [(r.name, r.config, r.result, r.series) for r in data.results],
            )

        job = self.open_model_job(data.model, data.data, trust=trust, check=check, after=after)
        job.kind = "open session"
        job.meta.update(path=path, session=data)
        return job

    def config_for_export(self, name: str | None = None) -> ModelConfig:
        from dataclasses import replace

        s = self.session
        cfg = s.config if name is None else s.configs[name]
        if s.handle is not None and not cfg.model:
            cfg = replace(cfg, model=s.handle.source)
        return cfg
