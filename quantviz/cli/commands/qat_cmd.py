"""``quantviz qat``: quantization-aware fine-tuning, before / after / float in one document."""

from __future__ import annotations

import argparse
from typing import Any

from quantviz.cli.commands.common import load_model_and_data, reporter
from quantviz.cli.errors import where
from quantviz.cli.output import emit, pct
from quantviz.cli.progress import drive
from quantviz.core.units import human_bytes

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    """Fine-tune under ``config`` (``DEFAULT_CONFIG`` when None); print before and after."""
    from quantviz.core.defaults import DEFAULT_CONFIG, DEFAULT_NAME
    from quantviz.eval import check_config
    from quantviz.eval.qat import QatOptions, finetune

    method = "lsq" if args.lsq else "pact" if args.pact else "ste"
    with where("qat options"):
        options = QatOptions(
            epochs=args.epochs, method=method, lr=args.lr, batch_size=args.train_batch_size
        )
    handle, data = load_model_and_data(args)
    if config is None:
        config, name = DEFAULT_CONFIG, DEFAULT_NAME
    else:
        name = args.config
    with where(args.config or "the default config"):
        check_config(handle, config)
    with where(handle.source):
        result = drive(finetune(handle, data, config, options, name=name), reporter(args, "qat"))
    saved = None
    if args.save_weights:
        from safetensors.torch import save

        from quantviz.io.atomic import atomic_write_bytes

        blob = save({k: v.contiguous() for k, v in result.weights.items()})
        atomic_write_bytes(args.save_weights, blob)
        saved = args.save_weights
    doc = {"model": args.model, "data": data.name, **result.to_dict(), "weights_file": saved}
    m = result.after.metric
    loss = "distillation from the float model" if result.distilled else "labels"
    lines = [
        f"model        {args.model}",
        f"config       {name}",
        f"method       {method} ({loss}, {result.train_samples} training samples, "
        f"{result.steps} steps)",
        f"{m:<12} before {pct(m, result.before.value)}  ->  after {pct(m, result.after.value)}"
        f"  (float {pct(m, result.before.baseline)})",
        f"size         {human_bytes(result.after.model_bytes)} of "
        f"{human_bytes(result.after.float_bytes)} float",
        "loss         " + ", ".join(f"{h['loss']:.4f}" for h in result.history),
    ]
    if saved:
        lines.append(f"weights      {saved} (fine-tuned float weights, safetensors)")
    emit(args, doc, "\n".join(lines))
    return 0
