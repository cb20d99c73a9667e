"""Editing ONNX graphs: what the QDQ exporter and the ONNX model loader share (no Qt).

Weights are found by what they are: an initializer traced through ``Transpose`` /
``Identity`` nodes to the op consuming it as a weight (:func:`weight_uses`); activations get
``[Clip ->] QuantizeLinear -> DequantizeLinear`` from a fitted static quantizer
(:func:`qdq_activation`). Needs the ``onnx`` package (the ``export`` extra), imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "WeightUse",
    "constants_to_initializers",
    "consumers_of",
    "int_type",
    "name_nodes",
    "node_attr",
    "qdq_activation",
    "weight_uses",
]


def constants_to_initializers(graph: Any) -> None:
    """Float ``Constant`` nodes of rank >= 2 become initializers (weights may be either)."""
    from onnx import TensorProto

    keep = []
    moved = False
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1:
            a = node.attribute[0]
            if (
                a.name == "value"
                and a.t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
                and len(a.t.dims) >= 2
            ):
                t = TensorProto()
                t.CopyFrom(a.t)
                t.name = node.output[0]
                graph.initializer.append(t)
                moved = True
                continue
        keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)


def name_nodes(graph: Any) -> None:
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"quantviz_node_{i}"
        seen.add(node.name)


@dataclass(frozen=True)
class WeightUse:
    """Initializer ``init`` consumed as a weight by node ``node`` (its input ``index``).

    ``perm`` maps the torch layout onto the initializer: the layer's weight equals
    ``init_array.transpose(perm)`` (axis ``a`` of the torch weight is axis ``perm[a]`` of
    the initializer).
    """

    init: str
    node: str
    op_type: str
    data: str  # the node's data input ("" for Gather: its input is indices)
    perm: tuple[int, ...]


def consumers_of(graph: Any) -> dict[str, list[tuple[Any, int]]]:
    out: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                out.setdefault(name, []).append((node, i))
    return out


def node_attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def weight_uses(
    init: str, rank: int, consumers: dict[str, list[tuple[Any, int]]]
) -> list[WeightUse]:
    """Every weight-consuming op fed by ``init`` through Transpose / Identity nodes."""
    out: list[WeightUse] = []
    todo: list[tuple[str, tuple[int, ...]]] = [(init, tuple(range(rank)))]
    seen: set[str] = set()
    while todo:
        name, perm = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node, idx in consumers.get(name, []):
            op = node.op_type
            if op == "Identity":
                todo.append((node.output[0], perm))
            elif op == "Transpose":
                q = node_attr(node, "perm", list(reversed(range(rank))))
                todo.append((node.output[0], tuple(perm[i] for i in q)))
            elif op in ("Conv", "ConvTranspose") and idx == 1:
                out.append(WeightUse(init, node.name, op, node.input[0], perm))
            elif op == "Gemm" and idx == 1 and rank == 2:
                p = perm if node_attr(node, "transB", 0) else (perm[1], perm[0])
                out.append(WeightUse(init, node.name, op, node.input[0], p))
            elif op == "MatMul" and idx == 1 and rank == 2:
                out.append(WeightUse(init, node.name, op, node.input[0], (perm[1], perm[0])))
            elif op == "Gather" and idx == 0 and node_attr(node, "axis", 0) == 0:
                out.append(WeightUse(init, node.name, op, "", perm))
    return out


def int_type(bits: int, signed: bool) -> tuple[int, Any, tuple[int, int]]:
    """(ONNX type, numpy storage type, range) of the integer type holding ``bits``-bit codes."""
    from onnx import TensorProto

    if bits <= 4:
        return (
            (TensorProto.INT4, np.int8, (-8, 7))
            if signed
            else (TensorProto.UINT4, np.uint8, (0, 15))
        )
    if bits <= 8:
        return (
            (TensorProto.INT8, np.int8, (-128, 127))
            if signed
            else (TensorProto.UINT8, np.uint8, (0, 255))
        )
    if signed:
        return TensorProto.INT16, np.int16, (-32768, 32767)
    return TensorProto.UINT16, np.uint16, (0, 65535)


def qdq_activation(fqn: str, data: str, fq: Any, suffix: str) -> tuple[list[Any], list[Any], str]:
    """(initializers, nodes, output name) of ``[Clip ->] Q -> DQ`` on tensor ``data``."""
    from onnx import helper, numpy_helper

    spec = fq.spec
    _, np_t, (tmin, tmax) = int_type(max(spec.bits, 8), spec.symmetric)
    qmin, qmax = spec.qrange
    base = f"{fqn}_input_quantviz{suffix}"
    s, z = float(fq.scale), int(fq.zero_point)
    inits = [
        numpy_helper.from_array(np.array(s, dtype=np.float32), f"{base}_scale"),
        numpy_helper.from_array(np.array(z, dtype=np_t), f"{base}_zero_point"),
    ]
    nodes = []
    src = data
    if (qmin, qmax) != (tmin, tmax):
        lo, hi = fq.clip_range
        inits += [
            numpy_helper.from_array(np.array(lo, dtype=np.float32), f"{base}_clip_min"),
            numpy_helper.from_array(np.array(hi, dtype=np.float32), f"{base}_clip_max"),
        ]
        nodes.append(
            helper.make_node(
                "Clip",
                [data, f"{base}_clip_min", f"{base}_clip_max"],
                [f"{base}_clipped"],
                name=f"{base}_Clip",
            )
        )
        src = f"{base}_clipped"
    ins = [f"{base}_scale", f"{base}_zero_point"]
    nodes += [
        helper.make_node("QuantizeLinear", [src, *ins], [f"{base}_q"], name=f"{base}_Q"),
        helper.make_node("DequantizeLinear", [f"{base}_q", *ins], [base], name=f"{base}_DQ"),
    ]
    for n in nodes:
        n.doc_string = f"quantviz {fqn}: input activation {spec.short()}"
    return inits, nodes, base
