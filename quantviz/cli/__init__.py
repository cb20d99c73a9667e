"""The ``quantviz`` command: the app, or a headless subcommand.

::

    quantviz [MODEL] [--data FILE]                 # the app; the bundled sample when no MODEL
    quantviz eval   --model M [--data D] [--config C] [--trust] [--device cpu|cuda] [--json]
    quantviz sweep  --model M [--data D] [--bits 2,3,4,6,8] [--config C] [--json]
    quantviz sensitivity --model M [--data D] [--bits 4] [--json]
    quantviz export --model M --config C --format json|yaml|safetensors|onnx|aimet|html -o OUT
                    [--data D] [--strict]

Headless subcommands print one JSON document on stdout with ``--json`` (a readable summary
otherwise) and progress on stderr (bars on a terminal, plain lines otherwise). Exit status:
0 on success; 2 on bad input or a model that fails, with one line
``quantviz: error: <file/stage>: <message>`` (the traceback only with ``--debug``); 130 when
interrupted (Ctrl-C), after printing what a sweep or sensitivity run had finished.

Layout: :mod:`.entry` (:func:`main`), :mod:`.parser` (arguments), :mod:`.preflight`
(paths and config files checked before torch is imported), :mod:`.progress` (progress
display, driving the generators), :mod:`.errors` (the error boundary), :mod:`.output`
(documents and text), :mod:`.commands` (one module per subcommand). Importing this package
imports no torch.
"""

from __future__ import annotations

from quantviz.cli.entry import main
from quantviz.cli.parser import SUBCOMMANDS, build_parser

__all__ = ["SUBCOMMANDS", "build_parser", "main"]
