"""One module per subcommand; each ``run(args, config, started)`` returns the exit status.

:func:`run_command` checks the arguments without torch first (:mod:`quantviz.cli.preflight`)
and imports the subcommand's module (and with it torch) only then.
"""

from __future__ import annotations

import argparse
import importlib
import time

from quantviz.cli.preflight import preflight

__all__ = ["run_command"]

_MODULES = {
    "eval": "quantviz.cli.commands.eval_cmd",
    "sweep": "quantviz.cli.commands.sweep_cmd",
    "sensitivity": "quantviz.cli.commands.sensitivity_cmd",
    "mixed": "quantviz.cli.commands.mixed_cmd",
    "export": "quantviz.cli.commands.export_cmd",
    "debug": "quantviz.cli.commands.debug_cmd",
    "proxies": "quantviz.cli.commands.proxies_cmd",
    "qat": "quantviz.cli.commands.qat_cmd",
}


def run_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = preflight(args)  # its messages name their files
    mod = importlib.import_module(_MODULES[args.command])
    return int(mod.run(args, config, started))
