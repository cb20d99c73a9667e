"""Sweeps on a Ray cluster: every point (one configuration to evaluate) is a Ray task.

:class:`Cluster` is a :class:`~quantviz.eval.points.PointExecutor`; give it to a sweep
(``uniform_sweep(..., executor=cluster)``, ``sensitivity(..., executor=cluster)``) and each
point is evaluated by a Ray task instead of in this process::

    with Cluster("local") as cluster:          # or "auto", "ray://head:10001"
        res = run(uniform_sweep(handle, data, (2, 4, 8), executor=cluster))

* The model (the :class:`~quantviz.model.handle.ModelHandle`: module, layers, example
  input), the data and the float baseline go into the object store once per (model, data,
  baseline) — ``ray.put``, never once per task — and so do the calibration statistics. A
  task gets the references, rebuilds the model from the object store (once per worker
  process: the rebuilt model is kept for the next task on that worker), applies its
  configuration, evaluates it and returns the :class:`~quantviz.eval.results.EvalResult`
  (what the in-process sweep computes). No task opens a file.
* Results come back as they finish (``ray.wait``): :class:`~quantviz.eval.results.PointDone`
  in completion order, :class:`~quantviz.eval.points.TasksStatus` (running / waiting).
* A point whose evaluation raises is a :class:`~quantviz.eval.points.PointFailed` (the other
  points go on); a task whose worker process dies is run again by Ray (``max_retries``) and
  reported as :class:`~quantviz.eval.points.PointRetried`.
* Closing the generator (Cancel, Ctrl-C, an error) cancels every outstanding task
  (``ray.cancel``) and waits until they have stopped; the cluster stays usable.

``local`` starts a Ray instance on this machine with its cores (``num_cpus``) and shuts it
down on :meth:`Cluster.close` (a Ray already initialised in this process is used as it is and
left running); ``auto`` and ``ray://HOST:PORT`` connect to a running cluster, whose workers
need quantviz and torch installed. An address that cannot be reached is a
:class:`ClusterError` before any work starts. :meth:`Cluster.map` runs any module-level
function over items with the shared model, for analyses other than evaluations.

``ray`` is imported only when a cluster is opened (it is the ``cluster`` extra).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from quantviz.core import ModelConfig
from quantviz.eval.apply import WeightCache, needs_calibration
from quantviz.eval.evaluate import calibrate, evaluate, run
from quantviz.eval.forward import one_line
from quantviz.eval.points import Outcome, PointFailed, PointRetried, TasksStatus
from quantviz.eval.results import Baseline, PointDone
from quantviz.eval.transport import pack, unpack

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "INSTALL_HINT",
    "Cluster",
    "ClusterError",
    "Shared",
    "check_address",
]

INSTALL_HINT = 'pip install "quantviz[cluster]"'
#: seconds to wait for a cluster to answer before giving up
CONNECT_TIMEOUT = 10.0
#: how often a task whose worker died is run again
MAX_RETRIES = 3
#: seconds cancelled tasks get to stop before their workers are killed
CANCEL_GRACE = 5.0


class ClusterError(ValueError):
    """The cluster cannot be used (Ray missing, an address that cannot be reached)."""


def check_address(text: str) -> str:
    """``local``, ``auto`` or ``ray://HOST:PORT``; :class:`ClusterError` otherwise."""
    addr = text.strip()
    if addr in ("local", "auto"):
        return addr
    if addr.startswith("ray://"):
        parts = urlsplit(addr)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and port and not parts.path.strip("/"):
            return addr
    raise ClusterError(f"--cluster: expected local, auto or ray://HOST:PORT, got {text!r}")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"--cluster: Ray is not installed; install it with: {INSTALL_HINT}"
        ) from None
    return ray


# ---------------------------------------------------------------------------------------
# what the tasks run (in the worker processes)
# ---------------------------------------------------------------------------------------
@dataclass
class Shared:
    """The model, data and float baseline as a task sees them (rebuilt from the store)."""

    handle: ModelHandle
    data: EvalData
    baseline: Baseline | None
    cache: WeightCache = field(default_factory=WeightCache)


#: worker side: object id -> Shared, the last few models this worker process rebuilt
_WORKER_MODELS: OrderedDict[str, Shared] = OrderedDict()
_WORKER_KEEP = 2
_worker_lock = threading.Lock()


def _rebuild(payload: dict[str, Any]) -> Shared:
    """The worker's :class:`Shared` from the object-store payload (:func:`transport.pack`)."""
    handle, data, baseline = unpack(payload)
    return Shared(handle, data, baseline)


def _shared_in_worker(box: list[Any]) -> Shared:
    """The :class:`Shared` behind ``box[0]`` (an ObjectRef), rebuilt once per worker."""
    import ray

    ref = box[0]
    key = ref.hex()
    with _worker_lock:
        sh = _WORKER_MODELS.get(key)
        if sh is not None:
            _WORKER_MODELS.move_to_end(key)
            return sh
    sh = _rebuild(ray.get(ref))
    with _worker_lock:
        _WORKER_MODELS[key] = sh
        while len(_WORKER_MODELS) > _WORKER_KEEP:
            _WORKER_MODELS.popitem(last=False)
    return sh


def _attempt() -> int:
    """Which run of the current task this is (0 the first; Ray counts retries)."""
    try:
        from ray._private.worker import global_worker

        core: Any = getattr(global_worker, "core_worker")  # noqa: B009
        return int(core.get_current_task_attempt_number())
    except Exception:  # an older or newer Ray without it: retries go unreported
        return 0


def _evaluate_task(
    box: list[Any], stats_box: list[Any], config: ModelConfig, name: str, batch_size: int
) -> tuple[str, Any, int, int]:
    """One point: ``("ok", EvalResult, attempt, pid)`` or ``("error", message, ...)``."""
    attempt, pid = _attempt(), os.getpid()
    try:
        import ray

        sh = _shared_in_worker(box)
        stats = dict(ray.get(stats_box[0])) if stats_box[0] is not None else {}
        res = run(
            evaluate(
                sh.handle,
                sh.data,
                config,
                stats=stats,
                cache=sh.cache,
                batch_size=batch_size,
                baseline=sh.baseline,
                name=name,
            )
        )
    except Exception as exc:
        return "error", one_line(exc), attempt, pid
    return "ok", res, attempt, pid


def _map_task(
    box: list[Any], fn: Callable[[Shared, Any], Any], item: Any
) -> tuple[str, Any, int, int]:
    attempt, pid = _attempt(), os.getpid()
    try:
        out = fn(_shared_in_worker(box), item)
    except Exception as exc:
        return "error", one_line(exc), attempt, pid
    return "ok", out, attempt, pid


# ---------------------------------------------------------------------------------------
# the driver side
# ---------------------------------------------------------------------------------------
def _reachable(addr: str, timeout: float) -> None:
    parts = urlsplit(addr)
    host, port = parts.hostname or "", parts.port or 0
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"--cluster {addr}: cannot reach {host}:{port} "
            f"({exc.strerror or type(exc).__name__}; is the Ray head running with the "
            "client server on that port?)"
        ) from None


@dataclass
class _Put:
    """The object-store copy of one (model, data, baseline)."""

    module: weakref.ref[Any]
    x: weakref.ref[Any]
    baseline: weakref.ref[Any] | None
    ref: Any
    seconds: float
    nbytes: int


class Cluster:
    """A Ray cluster to evaluate sweep points on (see the module doc).

    ``address``: ``local``, ``auto`` or ``ray://HOST:PORT``. ``num_cpus`` (``local`` only):
    the CPUs of the local instance (default: this machine's cores). ``cpus_per_task``: CPUs
    Ray reserves for each point. ``max_retries``: runs of a point after its worker died.
    The connection is made by :meth:`connect` (or on entering ``with``; the first
    :meth:`run` otherwise) and released by :meth:`close`.
    """

    def __init__(
        self,
        address: str = "local",
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
        max_retries: int = MAX_RETRIES,
        timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.address = check_address(address)
        if num_cpus is not None and num_cpus < 1:
            raise ClusterError(f"num_cpus: must be at least 1, got {num_cpus}")
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries
        self.timeout = timeout
        self._ray: Any = None
        self._owned = False
        self._puts: list[_Put] = []
        self._stats_refs: list[tuple[MutableMapping[str, Any], int, Any]] = []
        self._remote: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: seconds the last :meth:`share` spent putting the model into the object store
        self.put_seconds = 0.0
        #: the last run's point index -> process id of the worker that computed it
        self.worker_pids: dict[int, int] = {}

    # -- connection ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ray is not None and self._ray.is_initialized()

    def connect(self) -> Cluster:
        """Start (``local``) or reach the cluster; :class:`ClusterError` when it cannot."""
        with self._lock:
            if self.connected:
                return self
            ray = _import_ray()
            if self.address.startswith("ray://"):
                _reachable(self.address, min(self.timeout, 5.0))
            if ray.is_initialized():  # this process already talks to a Ray: use it
                self._ray, self._owned = ray, False
                return self
            kw: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
            target = None if self.address == "local" else self.address
            if target is None:
                kw.update(num_cpus=self.num_cpus or os.cpu_count() or 1, include_dashboard=False)
            try:
                ray.init(address=target, **kw)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                raise ClusterError(
                    f"--cluster {self.address}: cannot connect ({one_line(exc)})"
                    + ("; start one with `ray start --head`" if self.address == "auto" else "")
                ) from None
            self._ray, self._owned = ray, True
            return self

    def close(self) -> None:
        """Forget the object-store copies; shut Ray down if :meth:`connect` started it."""
        with self._lock:
            self._puts.clear()
            self._stats_refs.clear()
            self._remote.clear()
            ray, owned = self._ray, self._owned
            self._ray, self._owned = None, False
        if ray is not None and owned and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> Cluster:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def slots(self) -> int:
        """How many points can run at once (the cluster's CPUs / ``cpus_per_task``)."""
        ray = self.connect()._ray
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.cpus_per_task))

    def _fn(self, name: str, fn: Callable[..., Any]) -> Any:
        remote = self._remote.get(name)
        if remote is None:
            remote = self._ray.remote(num_cpus=self.cpus_per_task, max_retries=self.max_retries)(fn)
            self._remote[name] = remote
        return remote

    # -- the object store -----------------------------------------------------------------
    def share(self, handle: ModelHandle, data: EvalData, baseline: Baseline | None) -> Any:
        """The ObjectRef of (``handle``, ``data``, ``baseline``), put once per objects."""
        self.connect()
        for p in self._puts:
            if (
                p.module() is handle.module
                and p.x() is data.x
                and (p.baseline() if p.baseline is not None else None) is baseline
            ):
                self.put_seconds = 0.0
                return p.ref
        t0 = time.perf_counter()
        try:
            ref = self._ray.put(pack(handle, data, baseline))
        except Exception as exc:
            raise ClusterError(
                f"--cluster: {handle.source}: the model cannot be sent to Ray workers "
                f"({one_line(exc)})"
            ) from None
        self.put_seconds = time.perf_counter() - t0
        nbytes = int(handle.float_bytes)
        self._puts.insert(
            0,
            _Put(
                weakref.ref(handle.module),
                weakref.ref(data.x),
                None if baseline is None else weakref.ref(baseline),
                ref,
                self.put_seconds,
                nbytes,
            ),
        )
        del self._puts[2:]  # the last two models stay in the store
        return ref

    def _share_stats(self, stats: MutableMapping[str, Any]) -> Any:
        """The ObjectRef of ``stats``, put once per statistics dict (calibration only ever
        adds to one, so the same dict with as many layers holds the same statistics)."""
        if not stats:
            return None
        for held, n, ref in self._stats_refs:
            if held is stats and n == len(stats):
                return ref
        ref = self._ray.put(dict(stats))
        # the dict itself is held, so its id cannot be reused by another while it is here
        self._stats_refs.insert(0, (stats, len(stats), ref))
        del self._stats_refs[4:]
        return ref

    # -- running --------------------------------------------------------------------------
    def run(
        self,
        handle: ModelHandle,
        data: EvalData,
        points: Sequence[tuple[str, ModelConfig]],
        *,
        baseline: Baseline,
        stats: MutableMapping[str, LayerStats],
        batch_size: int = 256,
    ) -> Generator[Any, None, list[Outcome]]:
        """Evaluate ``points`` (``(name, config)``) as Ray tasks; see the module doc.

        Calibration statistics missing from ``stats`` that some point needs are collected
        here first (one float pass, as the in-process sweep does) and sent along.
        """
        self.connect()
        box = [self.share(handle, data, baseline)]  # a model that cannot travel fails first
        bs = min(batch_size, baseline.batch_limit or batch_size)
        static = sorted({f for _, cfg in points for f in needs_calibration(handle, cfg)})
        if static:
            yield from calibrate(handle, data, static, stats, batch_size=bs)
        stats_box = [self._share_stats(stats) if static else None]
        fn = self._fn("evaluate", _evaluate_task)
        refs = [fn.remote(box, stats_box, cfg, name, batch_size) for name, cfg in points]
        names = [name for name, _ in points]
        return (yield from self._stream(refs, names))

    def map(
        self,
        fn: Callable[[Shared, Any], Any],
        items: Iterable[Any],
        handle: ModelHandle,
        data: EvalData,
        baseline: Baseline | None = None,
        names: Sequence[str] | None = None,
    ) -> Generator[Any, None, list[Any]]:
        """``fn(shared, item)`` for each of ``items`` as Ray tasks, with the model shared.

        ``fn`` must be a module-level function (workers import it). Yields ``PointDone``
        (its ``result`` is what ``fn`` returned), ``PointFailed``, ``PointRetried`` and
        ``TasksStatus`` as tasks finish; returns the outcomes in the items' order (a
        ``PointFailed`` where ``fn`` raised).
        """
        self.connect()
        box = [self.share(handle, data, baseline)]
        items = list(items)
        remote = self._fn("map", _map_task)
        refs = [remote.remote(box, fn, it) for it in items]
        labels = list(names) if names is not None else [f"item {i}" for i in range(len(items))]
        return (yield from self._stream(refs, labels))

    def _stream(self, refs: list[Any], names: list[str]) -> Generator[Any, None, list[Any]]:
        """Relay ``refs`` as they finish; cancel the rest when closed early."""
        ray = self._ray
        n = len(refs)
        index = {r: i for i, r in enumerate(refs)}
        outcomes: list[Any] = [None] * n
        pending = list(refs)
        completed = 0
        slots = self.slots
        self.worker_pids = {}

        def status() -> TasksStatus:
            running = min(len(pending), slots)
            return TasksStatus(running, len(pending) - running, completed, n)

        try:
            yield status()
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in ready:
                    i = index[ref]
                    attempt = 0
                    try:
                        kind, value, attempt, self.worker_pids[i] = ray.get(ref)
                    except Exception as exc:  # retries used up, cancelled, unpicklable...
                        kind, value = "error", one_line(exc)
                    completed += 1
                    if attempt:
                        yield PointRetried(i, n, names[i], attempt + 1)
                    if kind == "ok":
                        outcomes[i] = value
                        yield PointDone(value, i, n, completed)
                    else:
                        outcomes[i] = PointFailed(i, n, names[i], str(value), completed)
                        yield outcomes[i]
                    yield status()
        finally:
            if pending:
                self.cancel(pending)
        return outcomes

    def cancel(self, refs: Sequence[Any], grace: float = CANCEL_GRACE) -> None:
        """Cancel ``refs`` and wait (up to ``grace`` s, then kill their workers)."""
        ray = self._ray
        for r in refs:
            with contextlib.suppress(Exception):  # already finished
                ray.cancel(r, force=False)
        _done, left = ray.wait(list(refs), num_returns=len(refs), timeout=grace)
        for r in left:
            with contextlib.suppress(Exception):
                ray.cancel(r, force=True)
        if left:
            ray.wait(list(left), num_returns=len(left), timeout=grace)
