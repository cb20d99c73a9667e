"""Per-layer numbers as Model Explorer node data (``ai-edge-model-explorer``).

Model Explorer overlays "node data" on a graph: a JSON file mapping graph ids to a
``GraphNodeData`` — ``results`` (node key -> ``{"value": number}``) plus an optional colour
``gradient`` (stops 0..1 between the smallest and the largest value) or ``thresholds`` —
as its ``node_data_builder`` writes it (``ModelNodeData.to_json_string``). Node keys are
node ids (or output tensor names) of the graph Model Explorer shows. For a PyTorch model
Model Explorer reads a ``torch.export`` program and names each node after its fx node
(``conv2d``, ``linear_1``, in graph id ``graph``): :func:`node_ids` exports the model the
same way and maps each quantizable layer to the fx node calling its weight. Each layer is
also keyed by its qualified name (``features.0``), which matches graphs whose node ids are
the module names (an unmatched key is ignored by Model Explorer).

Low SQNR is bad: the default gradient runs from red (the smallest value) through yellow to
green (the largest). Files are written atomically (:mod:`quantviz.io.atomic`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from quantviz.io.atomic import atomic_write_text

if TYPE_CHECKING:
    from quantviz.eval.debug import DebugResult
    from quantviz.model.handle import ModelHandle

__all__ = ["GRAPH_ID", "VALUES", "node_data", "node_ids", "write_node_data"]

#: the graph id of Model Explorer's PyTorch ExportedProgram adapter
GRAPH_ID = "graph"

#: what a node's value can be: (isolated | cumulative) x (sqnr_db | mse | cosine)
VALUES = tuple(
    f"{side}_{m}" for side in ("cumulative", "isolated") for m in ("sqnr_db", "mse", "cosine")
)

#: red (worst) -> yellow -> green (best) for "larger is better" values, reversed for MSE
_GOOD_HIGH = [
    {"stop": 0, "bgColor": "#d73027"},
    {"stop": 0.5, "bgColor": "#fee08b"},
    {"stop": 1, "bgColor": "#1a9850"},
]


def node_ids(handle: ModelHandle) -> dict[str, str]:
    """Layer fqn -> the fx node name Model Explorer gives its call in a ``torch.export`` of
    the model ({} when the model cannot be exported, e.g. TorchScript)."""
    import torch

    param_of: dict[str, str] = {}
    try:
        if isinstance(handle.module, torch.fx.GraphModule) and handle.flavour == "exported":
            gm = handle.module
        else:
            ep = torch.export.export(handle.module, (handle.example_input,))
            gm = ep.graph_module
            sig = ep.graph_signature
            # placeholder name -> parameter fqn (weights are lifted to graph inputs)
            param_of = dict(sig.inputs_to_parameters)
    except Exception:  # any export failure: no fx names, the fqn keys remain
        return {}
    by_param = {lay.param_name: lay.fqn for lay in handle.layers}
    out: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        for arg in node.all_input_nodes:
            if arg.op == "placeholder":
                pname = param_of.get(arg.name)
            elif arg.op == "get_attr":
                pname = str(arg.target)
            else:
                continue
            fqn = by_param.get(pname or "")
            if fqn is not None and fqn not in out:
                out[fqn] = node.name
    return out


def node_data(
    result: DebugResult,
    ids: Mapping[str, str] | None = None,
    value: str = "cumulative_sqnr_db",
    graph_id: str = GRAPH_ID,
) -> dict[str, Any]:
    """The ``ModelNodeData`` JSON object: ``{graph_id: {"results": ..., "gradient": ...}}``.

    Non-finite values (an exact layer's inf SQNR) are written as the largest finite value
    of the others (JSON has no inf); a layer with no value is left out.
    """
    if value not in VALUES:
        raise ValueError(f"value: must be one of {', '.join(VALUES)}; got {value!r}")
    side, metric = value.split("_", 1)
    raw: dict[str, float] = {}
    for lay in result.layers:
        v = float(getattr(getattr(lay, side), metric))
        if not math.isnan(v):
            raw[lay.fqn] = v
    finite = [v for v in raw.values() if math.isfinite(v)]
    hi = max(finite) if finite else 0.0
    lo = min(finite) if finite else 0.0
    results: dict[str, dict[str, float]] = {}
    for fqn, v in raw.items():
        v = v if math.isfinite(v) else (hi if v > 0 else lo)
        results[fqn] = {"value": v}
        if ids and fqn in ids:
            results[ids[fqn]] = {"value": v}
    gradient = (
        _GOOD_HIGH
        if metric != "mse"
        else [{"stop": 1 - g["stop"], "bgColor": g["bgColor"]} for g in reversed(_GOOD_HIGH)]
    )
    return {graph_id: {"results": results, "gradient": [dict(g) for g in gradient]}}


def write_node_data(
    path: str | os.PathLike[str],
    result: DebugResult,
    ids: Mapping[str, str] | None = None,
    value: str = "cumulative_sqnr_db",
) -> None:
    """Write :func:`node_data` to ``path`` atomically."""
    doc = node_data(result, ids, value)
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
