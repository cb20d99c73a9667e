"""ONNX files as quantviz models: the weights are the initializers, onnxruntime runs the graph.

Needs the ``export`` extra (``onnx`` and ``onnxruntime``), imported when an ONNX file is
opened.

**Layers.** A layer is a float initializer of rank >= 2 consumed — directly or through
``Transpose`` / ``Identity`` — as the weight of a ``Conv`` / ``ConvTranspose`` (input 1), a
``Gemm`` (input B) or a ``MatMul`` (input 1, rank 2); or, in a model that already holds
QDQ nodes, the integer initializer a ``DequantizeLinear`` turns into such a weight. Its name
is the initializer's (``features.0.weight`` -> ``features.0``), or, for the names an exporter
makes up (``onnx::Conv_193``), the torch scope of the node (``/layer1/layer1.0/conv1/Conv`` ->
``layer1.0.conv1``). Each weight is a parameter of :class:`OnnxModule` in the layout
quantviz uses for torch layers — output channels on axis 0 and the reduction dimension last
(``[out, in]`` for Gemm and MatMul, whatever the file's layout; ConvTranspose keeps
``[in, out/groups, k...]`` as in torch): the per-channel axis of the op in the file
(Conv 0, ConvTranspose 1, Gemm 0 with ``transB=1`` else 1, MatMul its last) is
``handle.meta["onnx"]["layers"][fqn]["axis"]``; ``LayerInfo.channel_axis`` is the output
channel axis of the parameter (0, ConvTranspose 1).

**Running.** The quantizable initializers become graph inputs of an onnxruntime session,
fed the module's current parameters on every call: swapping a parameter's ``.data`` for a
fake-quantized tensor (:func:`quantviz.eval.apply_config`) runs the model with the
fake-quantized initializers substituted. Activation hooks (:meth:`OnnxModule.add_hooks`)
observe layer inputs / outputs as extra graph outputs (calibration statistics); a static
uniform activation quantizer (the hook :func:`quantviz.eval.apply_config` installs) becomes
``[Clip ->] QuantizeLinear -> DequantizeLinear`` on the layer's input, built by the QDQ
exporter's own code (:func:`quantviz.model.onnx_graph.qdq_activation`). Any other hook
that would replace a tensor — dynamic quantization, an arbitrary callable — is refused
with a ``ValueError``: onnxruntime cannot run Python inside the graph.

**Files that already hold QDQ.** The weights are the dequantized values; activation
``QuantizeLinear -> DequantizeLinear`` pairs on the layer inputs are bypassed (the module
is the float model) and read back, with the weight scales, into a configuration
(``handle.meta["file_config"]``: bits from the zero point's type, symmetric when the zero
points are 0, per channel for a vector scale on ``axis``, per group for ``block_size``;
the scales themselves in ``handle.meta["onnx"]["qdq"]``).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quantviz.model.errors import ModelLoadError
from quantviz.model.handle import LayerInfo, ModelHandle
from quantviz.model.limits import too_big

__all__ = [
    "OnnxModule",
    "activation_refusal",
    "load_onnx",
    "onnx_layer_name",
    "require_onnx",
]

_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_EXTRA = "pip install 'quantviz[export]'"


def require_onnx(what: str = "opening an ONNX model") -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or a :class:`ModelLoadError` naming the extra to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(
            f"{what} needs the onnx and onnxruntime packages (the export extra): {_EXTRA} ({exc})"
        ) from None
    return onnx, onnxruntime


def activation_refusal(spec: Any) -> str:
    """Why activation spec ``spec`` cannot run on an ONNX model ("" when it can)."""
    if spec.dynamic:
        return (
            f"{spec.short()}: dynamic activation quantization cannot run on an ONNX model "
            "(onnxruntime runs the graph, ranges cannot be measured per batch in it); use a "
            "static spec (dynamic: false) with calibration data"
        )
    if spec.quantizer != "uniform":
        return (
            f"{spec.short()}: {spec.quantizer} activation quantization cannot run on an ONNX "
            "model (QuantizeLinear / DequantizeLinear express only uniform grids)"
        )
    return ""


# -----------------------------------------------------------------------------------------
# names
# -----------------------------------------------------------------------------------------
def _scope_name(node_name: str, op_type: str) -> str:
    """``/layer2/layer2.0/downsample/downsample.0/Conv`` -> ``layer2.0.downsample.0``."""
    parts = [p for p in node_name.strip("/").split("/") if p]
    if len(parts) > 1 and (parts[-1] == op_type or parts[-1].startswith(op_type + "_")):
        parts = parts[:-1]
    name = ""
    for p in parts:
        head = p.rpartition(".")[0]
        if head and (name == head or name.endswith("." + head)):
            name = name[: len(name) - len(head)] + p
        else:
            name = f"{name}.{p}" if name else p
    return name


def onnx_layer_name(init: str, node_name: str, op_type: str) -> str:
    """A layer's name: the initializer's without ``.weight`` / ``_quantized``; the node's
    torch scope for names an exporter made up (``onnx::Conv_193``)."""
    name = init
    for suffix in ("_quantized", "_quantviz_codes", "_DequantizeLinear_Output", ":0"):
        name = name.removesuffix(suffix)
    name = name.removesuffix(".weight").removesuffix("_weight")
    made_up = "::" in init or not name or name.replace("_", "").isdigit()
    if made_up and node_name:
        name = _scope_name(node_name, op_type) if node_name.startswith("/") else node_name
    return name or init


_RESERVED = set(dir(nn.Module())) | {"weight"}


def _module_path(name: str) -> str:
    """A dotted path every segment of which can be a submodule of :class:`OnnxModule`."""
    segs = []
    for s in name.split("."):
        s = s or "_"
        while s in _RESERVED:
            s += "_"
        segs.append(s)
    return ".".join(segs)


# -----------------------------------------------------------------------------------------
# the module
# -----------------------------------------------------------------------------------------
class _Holder(nn.Module):
    """A node of the parameter tree; a layer's holder has the parameter ``weight``."""


@dataclass
class _Layer:
    fqn: str
    feed: str  # graph input name the parameter is fed as
    inv: tuple[int, ...]  # parameter -> file layout (None-op when identity)
    nodes: list[str]  # names of the nodes using the weight
    data: list[str]  # their data inputs
    output: str  # the first node's output
    dtype: Any = np.float32


@dataclass
class _Hooks:
    pre: dict[str, list[Callable[[torch.Tensor], Any]]] = field(default_factory=dict)
    post: dict[str, list[Callable[[torch.Tensor], Any]]] = field(default_factory=dict)
    quant: dict[str, Any] = field(default_factory=dict)  # fqn -> FittedQuantizer


class OnnxModule(nn.Module):
    """An ONNX graph run by onnxruntime, its quantizable weights as parameters (module doc)."""

    def __init__(
        self,
        name: str,
        graph_bytes: bytes,
        layers: list[_Layer],
        weights: dict[str, torch.Tensor],
        input_name: str,
        input_shape: tuple[Any, ...],
        output_names: list[str],
        opset: int,
    ) -> None:
        super().__init__()
        self.onnx_name = name
        self._graph_bytes = graph_bytes  # the graph, weights as inputs (no weight data)
        self._layers = {lay.fqn: lay for lay in layers}
        self._input = input_name
        self._input_shape = input_shape
        self._outputs = output_names
        self._opset = opset
        self._hooks = _Hooks()
        self._sessions: OrderedDict[Any, Any] = OrderedDict()
        self._feed_cache: dict[str, tuple[Any, np.ndarray, torch.Tensor]] = {}
        self._lock = threading.Lock()
        for fqn, w in weights.items():
            holder: nn.Module = self
            for seg in fqn.split("."):
                nxt = holder._modules.get(seg)
                if nxt is None:
                    nxt = _Holder()
                    holder.add_module(seg, nxt)
                holder = nxt
            holder.register_parameter("weight", nn.Parameter(w, requires_grad=False))

    # -- the graph ---------------------------------------------------------------------
    def _param(self, fqn: str) -> torch.Tensor:
        mod: nn.Module = self
        for seg in fqn.split("."):
            mod = mod._modules[seg]  # type: ignore[assignment]
        p = mod._parameters["weight"]
        assert p is not None
        return p

    def graph(self, *, with_weights: bool = True) -> Any:
        """The float graph as an ``onnx.ModelProto``; ``with_weights``: the current parameter
        values written back as initializers in the file's layout (else weights are inputs)."""
        onnx, _ = require_onnx()
        from onnx import numpy_helper

        model = onnx.load_from_string(self._graph_bytes)
        if not with_weights:
            return model
        feeds = {lay.feed for lay in self._layers.values()}
        inputs = [i for i in model.graph.input if i.name not in feeds]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
        for fqn, lay in self._layers.items():
            arr = self._feed_array(fqn, lay)
            model.graph.initializer.append(numpy_helper.from_array(arr, lay.feed))
        return model

    def _feed_array(self, fqn: str, lay: _Layer) -> np.ndarray:
        """The parameter in the file's layout and dtype; a copy (transposed, cast) is kept
        while the parameter's tensor is unchanged (same storage and version)."""
        p = self._param(fqn).detach()
        key = (p.data_ptr(), p._version, tuple(p.shape), p.dtype)
        hit = self._feed_cache.get(fqn)
        if hit is not None and hit[0] == key:  # (hit[2] holds the storage: no address reuse)
            return hit[1]
        t = p.float() if p.dtype == torch.bfloat16 else p
        if lay.inv != tuple(range(len(lay.inv))):
            t = t.permute(lay.inv)
        arr = np.ascontiguousarray(t.cpu().numpy())
        if arr.dtype != lay.dtype:
            arr = arr.astype(lay.dtype)
        if arr.base is not None or not arr.flags.owndata:  # a view of p: nothing to keep
            self._feed_cache.pop(fqn, None)
        else:
            self._feed_cache[fqn] = (key, arr, p)
        return arr

    def _session(self, observe: tuple[str, ...], quant_key: tuple[Any, ...]) -> Any:
        key = (observe, quant_key)
        sess = self._sessions.get(key)
        if sess is not None:
            self._sessions.move_to_end(key)
            return sess
        onnx, ort = require_onnx()
        from quantviz.model.onnx_graph import name_nodes, qdq_activation

        model = onnx.load_from_string(self._graph_bytes)
        graph = model.graph
        name_nodes(graph)
        if self._hooks.quant:
            before: dict[str, list[Any]] = {}
            rewire: dict[str, str] = {}
            for fqn, fq in self._hooks.quant.items():
                lay = self._layers[fqn]
                for i, (node, data) in enumerate(zip(lay.nodes, lay.data, strict=True)):
                    inits, nodes, out = qdq_activation(fqn, data, fq, f"_{i}" if i else "")
                    graph.initializer.extend(inits)
                    before.setdefault(node, []).extend(nodes)
                    rewire[node] = out
            out_nodes = []
            for node in graph.node:
                out_nodes.extend(before.get(node.name, []))
                if node.name in rewire:
                    node.input[0] = rewire[node.name]
                out_nodes.append(node)
            del graph.node[:]
            graph.node.extend(out_nodes)
        have = {o.name for o in graph.output}
        for name in observe:
            if name not in have and name != self._input:
                vi = onnx.ValueInfoProto()
                vi.name = name
                graph.output.append(vi)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads and threads.isdigit():
            opts.intra_op_num_threads = int(threads)
        try:
            sess = ort.InferenceSession(
                model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ValueError(
                f"{self.onnx_name}: onnxruntime cannot build the session "
                f"({type(exc).__name__}: {exc})"
            ) from None
        self._sessions[key] = sess
        while len(self._sessions) > 4:
            self._sessions.popitem(last=False)
        return sess

    # -- hooks ---------------------------------------------------------------------------
    def add_hooks(
        self,
        fqn: str,
        pre: Callable[[torch.Tensor], Any] | None = None,
        post: Callable[[torch.Tensor], Any] | None = None,
    ) -> Callable[[], None]:
        """Observe layer ``fqn``'s input / output (hooks returning ``None``), or quantize
        its input with a static uniform quantizer (a hook carrying ``.quantizer``, as
        :func:`quantviz.eval.apply_config` installs). Other replacing hooks are refused."""
        if fqn not in self._layers:
            raise KeyError(f"no quantizable layer named {fqn!r} in {self.onnx_name}")
        dyn = getattr(pre, "dynamic_spec", None)
        if dyn is not None:
            raise ValueError(f"{self.onnx_name}: layer {fqn!r}: {activation_refusal(dyn)}")
        fq = getattr(pre, "quantizer", None)
        added: list[tuple[dict[str, Any], Any]] = []
        if fq is not None:
            why = activation_refusal(fq.spec)
            if why:
                raise ValueError(f"{self.onnx_name}: layer {fqn!r}: {why}")
            if fq.spec.bits > 8 and self._opset < 21:
                raise ValueError(
                    f"{self.onnx_name}: layer {fqn!r}: {fq.spec.short()}: activations wider than "
                    f"8 bits need 16-bit QuantizeLinear (opset 21); the file is opset "
                    f"{self._opset}"
                )
            if fqn in self._hooks.quant:
                raise ValueError(f"{self.onnx_name}: layer {fqn!r}: input already quantized")
            self._hooks.quant[fqn] = fq
        elif pre is not None:
            self._hooks.pre.setdefault(fqn, []).append(pre)
            added.append((self._hooks.pre, pre))
        if post is not None:
            self._hooks.post.setdefault(fqn, []).append(post)
            added.append((self._hooks.post, post))

        def remove() -> None:
            if fq is not None and self._hooks.quant.get(fqn) is fq:
                del self._hooks.quant[fqn]
            for table, hook in added:
                hooks = table.get(fqn, [])
                if hook in hooks:
                    hooks.remove(hook)
                if not hooks:
                    table.pop(fqn, None)
            added.clear()

        return remove

    def locate_non_finite(self, x: torch.Tensor) -> str | None:
        """The first node (in graph order) whose output holds NaN/inf on ``x``, with the
        current weights and input quantization; ``None`` if no node's does."""
        onnx, _ = require_onnx()
        model = onnx.load_from_string(self._graph_bytes)
        names = [o for n in model.graph.node for o in n.output if o]
        by_output = {n.output[0]: n for n in model.graph.node if n.output}
        saved = self._hooks
        self._hooks = _Hooks(quant=dict(saved.quant))
        try:
            obs = tuple(names)
            feeds = self._feeds(x)
            sess = self._session(obs, self._quant_key())
            have = {o.name for o in sess.get_outputs()}
            wanted = [n for n in names if n in have]
            outs = sess.run(wanted, feeds)
        finally:
            self._hooks = saved
        layer_of = {lay.output: f for f, lay in self._layers.items()}
        for name, val in zip(wanted, outs, strict=True):
            a = np.asarray(val)
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                node = by_output.get(name)
                what = f"{node.op_type} node {node.name!r}" if node is not None else name
                layer = f" (layer {layer_of[name]})" if name in layer_of else ""
                return f"the output of {what}{layer}"
        return None

    def _quant_key(self) -> tuple[Any, ...]:
        return tuple(
            (f, fq.spec, fq.scale, fq.zero_point, fq.clip_range)
            for f, fq in self._hooks.quant.items()
        )

    def _feeds(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        xa = x.detach().cpu()
        if xa.dtype == torch.bfloat16:
            xa = xa.float()
        feeds = {self._input: np.ascontiguousarray(xa.numpy())}
        for fqn, lay in self._layers.items():
            feeds[lay.feed] = self._feed_array(fqn, lay)
        return feeds

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Any:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.onnx_name}: expected one tensor input, got {type(x).__name__}")
        hooks = self._hooks
        observe: list[str] = []
        for fqn in hooks.pre:
            observe.append(self._layers[fqn].data[0])
        for fqn in hooks.post:
            observe.append(self._layers[fqn].output)
        observe_t = tuple(dict.fromkeys(observe))
        quant_key = self._quant_key()
        feeds = self._feeds(x)
        with self._lock:
            sess = self._session(observe_t, quant_key)
        names = list(self._outputs) + [n for n in observe_t if n != self._input]
        try:
            outs = sess.run(names, feeds)
        except Exception as exc:
            want = ", ".join(str(d) for d in self._input_shape)
            raise ValueError(
                f"{self.onnx_name}: onnxruntime failed on an input of shape {tuple(x.shape)} "
                f"{x.dtype} (the graph input {self._input!r} is [{want}]): "
                f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from None
        values = dict(zip(names, outs, strict=True))
        values[self._input] = feeds[self._input]
        for table, which in ((hooks.pre, "input"), (hooks.post, "output")):
            for fqn, fns in list(table.items()):
                lay = self._layers[fqn]
                t = torch.from_numpy(
                    np.asarray(values[lay.data[0] if which == "input" else lay.output])
                )
                for fn in list(fns):
                    if fn(t) is not None:
                        raise ValueError(
                            f"{self.onnx_name}: layer {fqn!r}: a hook that replaces the layer's "
                            f"{which} cannot run inside onnxruntime; only observing hooks and "
                            "static uniform input quantization (QuantizeLinear / "
                            "DequantizeLinear) apply to an ONNX model"
                        )
        res = [torch.from_numpy(np.asarray(o)) for o in outs[: len(self._outputs)]]
        dev = x.device
        res = [r.to(dev) for r in res]
        return res[0] if len(res) == 1 else tuple(res)


# -----------------------------------------------------------------------------------------
# loading
# -----------------------------------------------------------------------------------------
def _load_proto(path: Path) -> Any:
    onnx, _ = require_onnx()
    from onnx import external_data_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: not a valid ONNX model, the protobuf does not parse "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not model.graph.node:
        raise ModelLoadError(f"{path}: an ONNX model with an empty graph (no nodes)")
    ext = [
        t
        for t in external_data_helper._get_all_tensors(model)
        if external_data_helper.uses_external_data(t)
    ]
    if ext:
        base = path.resolve().parent
        for t in ext:
            info = external_data_helper.ExternalDataInfo(t)
            loc = (base / info.location).resolve()
            if not loc.is_file():
                raise ModelLoadError(
                    f"{path}: external data {info.location!r} of initializer {t.name!r} is "
                    f"missing (looked for {loc})"
                )
            if not loc.is_relative_to(base):
                raise ModelLoadError(
                    f"{path}: external data {info.location!r} of {t.name!r} points outside "
                    "the model's folder"
                )
            size = loc.stat().st_size
            end = (info.offset or 0) + (info.length or 0)
            if end > size:
                raise ModelLoadError(
                    f"{path}: external data {info.location!r} of {t.name!r} is truncated "
                    f"({size:,} bytes, needs {end:,})"
                )
        total = sum(
            (base / external_data_helper.ExternalDataInfo(t).location).stat().st_size
            for t in {id(t): t for t in ext}.values()
        )
        msg = too_big(f"{path}: its external data", total)
        if msg:
            raise ModelLoadError(msg)
        try:
            external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: external data cannot be read ({type(exc).__name__}: {exc})"
            ) from None
    return model


def _dims(vi: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or "?")
    return tuple(out)


@dataclass
class _Found:
    init: str  # the initializer (float weight, or the integer codes of a DQ)
    feed: str  # the tensor the weight ops read (initializer, or the DQ output)
    perm: tuple[int, ...]  # torch layout -> file layout (weight = file.transpose(perm))
    uses: list[Any]  # WeightUse
    value: np.ndarray  # the float weight in the file's layout
    dq: Any = None  # the DequantizeLinear node (QDQ files)
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    reshape: Any = None  # a Reshape after the DequantizeLinear (blocks of a conv kernel)


def _dequantize(dq: Any, codes: np.ndarray, scale: np.ndarray, zp: np.ndarray | None) -> np.ndarray:
    from quantviz.model.onnx_graph import node_attr

    axis = int(node_attr(dq, "axis", 1))
    block = int(node_attr(dq, "block_size", 0))
    c = codes.astype(np.float32)
    z = np.zeros_like(scale, dtype=np.float32) if zp is None else zp.astype(np.float32)
    s = scale.astype(np.float32)
    if s.ndim == 0 or s.size == 1:
        return ((c - z.reshape(())) * s.reshape(())).astype(np.float32)
    ax = axis % c.ndim
    if block:
        s = np.repeat(s, block, axis=ax)[tuple(slice(0, n) for n in c.shape)]
        z = np.repeat(z, block, axis=ax)[tuple(slice(0, n) for n in c.shape)]
        return ((c - z) * s).astype(np.float32)
    shape = [1] * c.ndim
    shape[ax] = -1
    return ((c - z.reshape(shape)) * s.reshape(shape)).astype(np.float32)


def _find_weights(model: Any) -> list[_Found]:
    from onnx import TensorProto, numpy_helper

    from quantviz.model.onnx_graph import consumers_of, weight_uses

    graph = model.graph
    consumers = consumers_of(graph)
    inits = {t.name: t for t in graph.initializer}
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    found: list[_Found] = []
    for t in graph.initializer:
        if t.data_type in floats and len(t.dims) >= 2:
            uses = [
                u for u in weight_uses(t.name, len(t.dims), consumers) if u.op_type in _WEIGHT_OPS
            ]
            if uses:
                found.append(_Found(t.name, t.name, uses[0].perm, uses, numpy_helper.to_array(t)))
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        t = inits[node.input[0]]
        if t.data_type in floats or len(t.dims) < 2:
            continue
        feed, rank, reshape = node.output[0], len(t.dims), None
        users = consumers.get(feed, [])
        if len(users) == 1 and users[0][0].op_type == "Reshape" and users[0][1] == 0:
            # blocks of a conv kernel are quantized on its [C, K] view, then reshaped back
            shape_t = inits.get(users[0][0].input[1])
            if shape_t is not None:
                reshape = users[0][0]
                feed, rank = reshape.output[0], int(numpy_helper.to_array(shape_t).size)
        uses = [u for u in weight_uses(feed, rank, consumers) if u.op_type in _WEIGHT_OPS]
        if not uses:
            continue
        codes = numpy_helper.to_array(t)
        scale_t = inits.get(node.input[1])
        if scale_t is None:
            continue
        scale = numpy_helper.to_array(scale_t)
        zp = None
        if len(node.input) > 2 and node.input[2]:
            zt = inits.get(node.input[2])
            zp = None if zt is None else numpy_helper.to_array(zt)
        value = _dequantize(node, codes, scale, zp)
        if reshape is not None:
            shape = numpy_helper.to_array(inits[reshape.input[1]]).tolist()
            try:
                value = value.reshape(shape)
            except ValueError:
                continue
        found.append(_Found(t.name, feed, uses[0].perm, uses, value, node, scale, zp, reshape))
    order = {n.name: i for i, n in enumerate(graph.node)}  # layers in graph order
    found.sort(key=lambda f: min(order[u.node] for u in f.uses))
    return found


def _activation_qdq(graph: Any, data: str, producers: dict[str, Any], inits: dict[str, Any]) -> Any:
    """The ``QuantizeLinear -> DequantizeLinear`` pair producing tensor ``data`` (or None):
    ``(q_node, dq_node, scale, zero_point)``."""
    from onnx import numpy_helper

    dq = producers.get(data)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producers.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    s = inits.get(q.input[1])
    z = inits.get(q.input[2]) if len(q.input) > 2 and q.input[2] else None
    if s is None:
        return None
    return q, dq, numpy_helper.to_array(s), None if z is None else numpy_helper.to_array(z), z


def _spec_from_zero_point(
    zp_type: int, zp: np.ndarray | None, scale: np.ndarray, axis: int | None, block: int
) -> Any:
    from onnx import TensorProto

    from quantviz.core.spec import QuantSpec

    bits_of: dict[int, int] = {
        TensorProto.INT4: 4,
        TensorProto.UINT4: 4,
        TensorProto.INT8: 8,
        TensorProto.UINT8: 8,
        TensorProto.INT16: 16,
        TensorProto.UINT16: 16,
    }
    bits = bits_of.get(zp_type, 8)
    signed = zp_type in (TensorProto.INT4, TensorProto.INT8, TensorProto.INT16)
    mid = 0 if signed else 2 ** (bits - 1)
    symmetric = zp is None or bool(np.all(zp.astype(np.int64) == mid))
    if block:
        return QuantSpec(bits=bits, symmetric=symmetric, granularity="per_group", group_size=block)
    if scale.size > 1 and axis is not None:
        return QuantSpec(bits=bits, symmetric=symmetric, granularity="per_channel", axis=axis)
    return QuantSpec(bits=bits, symmetric=symmetric)


def load_onnx(
    path: Path,
    source: str,
    *,
    sidecar: dict[str, Any],
    input_shape: Sequence[int] | None,
    input_dtype: Any,
) -> ModelHandle:
    """Open ONNX file ``path`` as a :class:`ModelHandle` with its layers (module doc)."""
    onnx, _ = require_onnx()
    from onnx import TensorProto, helper

    from quantviz.model.inputs import example_input
    from quantviz.model.onnx_graph import constants_to_initializers, name_nodes, node_attr

    model = _load_proto(path)
    graph = model.graph
    constants_to_initializers(graph)
    name_nodes(graph)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    init_names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    if len(real_inputs) != 1:
        raise ModelLoadError(
            f"{path}: the graph takes {len(real_inputs)} inputs "
            f"({', '.join(i.name for i in real_inputs) or 'none'}); quantviz handles models "
            "with one tensor input"
        )
    inp = real_inputs[0]
    in_dims = _dims(inp)
    elem = inp.type.tensor_type.elem_type
    try:
        np_dtype = helper.tensor_dtype_to_np_dtype(elem)
    except Exception:
        raise ModelLoadError(f"{path}: input {inp.name!r} has an unsupported type {elem}") from None
    found = _find_weights(model)
    if not found:
        raise ModelLoadError(
            f"{path}: no quantizable initializers: no float initializer (nor DequantizeLinear "
            "of one) feeds the weight of a Conv, ConvTranspose, Gemm or MatMul node"
        )

    nodes = {n.name: n for n in graph.node}
    producers = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    layers: list[dict[str, Any]] = []
    olayers: list[_Layer] = []
    weights: dict[str, torch.Tensor] = {}
    info: dict[str, dict[str, Any]] = {}
    used_names: set[str] = set()
    remove_nodes: set[str] = set()
    remove_inits: set[str] = set()
    bypass: dict[str, str] = {}  # activation DQ output -> the float tensor before its Q
    qdq_info: dict[str, dict[str, Any]] = {}
    overrides: dict[str, Any] = {}
    for f in found:
        first = nodes[f.uses[0].node]
        op = first.op_type
        name = _module_path(onnx_layer_name(f.init, first.name, op))
        base, k = name, 2
        while name in used_names:
            name, k = f"{base}_{k}", k + 1
        used_names.add(name)
        w = f.value.transpose(f.perm) if f.perm != tuple(range(len(f.perm))) else f.value
        tw = torch.from_numpy(np.array(w, order="C", copy=True))
        if op in ("Conv", "ConvTranspose"):
            nd = w.ndim - 2
            kind = f"conv{nd}d" if op == "Conv" else f"conv_transpose{nd}d"
            k_el = math.prod(w.shape[2:])
            groups = int(node_attr(first, "group", 1))
            if op == "Conv":
                macs = (first.output[0], int(w.shape[1] * k_el))
                file_axis, channel_axis = 0, 0
            else:
                macs = (first.input[0], int(w.shape[1] * k_el))
                file_axis, channel_axis = 1, 1
            depthwise = op == "Conv" and groups > 1 and w.shape[1] == 1
            has_bias = len(first.input) > 2 and bool(first.input[2])
            bias_n = int(w.shape[0] if op == "Conv" else w.shape[1] * groups) if has_bias else 0
        else:
            kind, depthwise, channel_axis = "linear", False, 0
            if op == "Gemm":
                file_axis = 0 if node_attr(first, "transB", 0) else 1
                has_bias = len(first.input) > 2 and bool(first.input[2])
            else:
                file_axis = len(f.value.shape) - 1
                has_bias = False
            macs = (first.output[0], int(w.shape[1]))
            bias_n = int(w.shape[0]) if has_bias else 0
        nparams = int(w.size) + bias_n
        layers.append(
            dict(
                fqn=name,
                kind=kind,
                weight_shape=tuple(int(s) for s in w.shape),
                params=nparams,
                depthwise=bool(depthwise),
                macs=macs,
                bias=has_bias,
                class_name=op,
                param=f"{name}.weight",
                channel_axis=channel_axis,
            )
        )
        inv = tuple(int(i) for i in np.argsort(f.perm))
        data = [nodes[u.node].input[0] for u in f.uses]
        olayers.append(
            _Layer(
                name,
                f.feed,
                inv,
                [u.node for u in f.uses],
                data,
                first.output[0],
                f.value.dtype,
            )
        )
        weights[name] = tw
        info[name] = {
            "initializer": f.init,
            "node": first.name,
            "op": op,
            "file_shape": tuple(int(s) for s in f.value.shape),
            "axis": file_axis,
            "transposed": inv != tuple(range(len(inv))),
        }
        remove_inits.add(f.init)
        if f.dq is not None:
            remove_nodes.add(f.dq.name)
            if f.reshape is not None:
                remove_nodes.add(f.reshape.name)
            zt = inits.get(f.dq.input[2]) if len(f.dq.input) > 2 and f.dq.input[2] else None
            block = int(node_attr(f.dq, "block_size", 0))
            axis = int(node_attr(f.dq, "axis", 1)) % max(f.value.ndim, 1)
            zp_type = zt.data_type if zt is not None else inits[f.init].data_type
            assert f.scale is not None
            wspec = _spec_from_zero_point(zp_type, f.zero_point, f.scale, inv[axis], block)
            qdq_info[name] = {"weight_scale": f.scale, "weight_zero_point": f.zero_point}
            act_spec = None
            pair = _activation_qdq(graph, data[0], producers, inits)
            if pair is not None:
                _, _, s, z, zt2 = pair
                act_spec = _spec_from_zero_point(
                    zt2.data_type if zt2 is not None else TensorProto.UINT8, z, s, None, 0
                )
                qdq_info[name].update(input_scale=s, input_zero_point=z)
            overrides[name] = (wspec, act_spec)
    # every activation QuantizeLinear -> DequantizeLinear pair is bypassed: the float model
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.name not in remove_nodes:
            q = producers.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                bypass[n.output[0]] = q.input[0]
    # the graph the session runs: weights are inputs, QDQ on weights and inputs bypassed
    for n in graph.node:
        for i, x in enumerate(n.input):
            if x in bypass:
                n.input[i] = bypass[x]
    for x in [o for o in graph.output if o.name in bypass]:
        x.name = bypass[x.name]
    for lay in olayers:
        lay.data = [bypass.get(d, d) for d in lay.data]
    feeds = {lay.feed for lay in olayers}
    inputs = [i for i in graph.input if i.name not in remove_inits and i.name not in feeds]
    del graph.input[:]
    graph.input.extend(inputs)
    for lay in olayers:
        elem_t = helper.np_dtype_to_tensor_dtype(np.dtype(lay.dtype))
        graph.input.append(
            helper.make_tensor_value_info(lay.feed, elem_t, list(info[lay.fqn]["file_shape"]))
        )
    keep_nodes = [n for n in graph.node if n.name not in remove_nodes]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    keep_inits = [t for t in graph.initializer if t.name not in remove_inits]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    _prune(graph)
    graph_bytes = model.SerializeToString()
    # example input: the graph's static shape, else input_shape / sidecar / the data
    static = all(isinstance(d, int) and d > 0 for d in in_dims[1:]) and len(in_dims) > 0
    ex_found = None
    if static:
        batch = in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else 1
        ex_found = torch.zeros(
            (batch, *in_dims[1:]), dtype=torch.from_numpy(np.zeros(0, np_dtype)).dtype
        )
    ex = example_input(path, source, ex_found, sidecar, input_shape, input_dtype)
    # MACs from the shapes onnx infers on the graph without the weight data (fast), at the
    # example input's shape
    try:
        sized = onnx.ModelProto()
        sized.CopyFrom(model)
        for gi in sized.graph.input:
            if gi.name == inp.name:
                for d, v in zip(gi.type.tensor_type.shape.dim, ex.shape, strict=False):
                    d.ClearField("dim_param")
                    d.dim_value = int(v)
        inferred = onnx.shape_inference.infer_shapes(sized)
        shapes = {vi.name: _dims(vi) for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    except Exception:
        shapes = {}
    shapes[inp.name] = tuple(int(v) for v in ex.shape)

    def per_sample(name: str) -> int:
        dims = shapes.get(name)
        if not dims or not all(isinstance(d, int) for d in dims[1:]):
            return 0
        return math.prod(dims[1:]) if len(dims) > 1 else 1

    infos: list[LayerInfo] = []
    for kw in layers:
        tensor, factor = kw.pop("macs")
        infos.append(LayerInfo(**kw, macs=per_sample(bypass.get(tensor, tensor)) * factor))

    module = OnnxModule(
        path.name,
        graph_bytes,
        olayers,
        weights,
        inp.name,
        in_dims,
        [o.name for o in graph.output],
        int(opset),
    )
    meta: dict[str, Any] = {
        "file_kind": "onnx",
        "onnx": {
            "opset": int(opset),
            "input": inp.name,
            "input_shape": in_dims,
            "layers": info,
            "qdq": qdq_info,
        },
        "static_batch": isinstance(in_dims[0], int) and in_dims[0] > 0 if in_dims else False,
    }
    if overrides:
        meta["file_config"] = _file_config(source, overrides, [lay.fqn for lay in infos])
    return ModelHandle(
        source=source,
        name=path.stem,
        module=module,
        layers=infos,
        example_input=ex,
        default_data=sidecar.get("default_data"),
        num_classes=sidecar.get("num_classes"),
        flavour="onnx",
        meta=meta,
    )


def _prune(graph: Any) -> None:
    """Drop initializers and nodes nothing reads any more (the bypassed Q/DQ pairs)."""
    needed = {o.name for o in graph.output}
    keep: list[Any] = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output) or not node.output:
            keep.append(node)
            needed.update(x for x in node.input if x)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _file_config(source: str, overrides: dict[str, Any], fqns: list[str]) -> Any:
    """The configuration a QDQ file was quantized with: one override per layer."""
    from quantviz.core.spec import LayerConfig, ModelConfig

    items = []
    for fqn in fqns:
        if fqn in overrides:
            w, a = overrides[fqn]
            items.append((fqn, LayerConfig(weight=w, activation=a)))
        else:
            items.append((fqn, LayerConfig(weight=None, activation=None)))
    return ModelConfig(
        default=LayerConfig(weight=None, activation=None), overrides=tuple(items), model=source
    )
