"""Export server for tests/io/test_export_sigkill.py (run as a subprocess; not a test).

Reads one command per line on stdin and answers one line on stdout:

``ref FMT DIR``            export both variants to ``DIR/ref0<ext>`` / ``ref1<ext>``;
                           answers ``ok <seconds of one export>``
``kill FMT TARGET DELAY``  fork a child that exports variant 0, 1, 0, 1, ... to TARGET
                           without end; SIGKILL it after DELAY seconds; answers
                           ``killed <completed exports>``
``export FMT TARGET V``    one complete export of variant V; answers ``ok``
``quit``

The model is loaded once and children are forked from this process, so each kill costs
milliseconds instead of a fresh interpreter importing torch.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import time


def main() -> None:
    import torch

    torch.set_num_threads(1)  # no OpenMP thread pool to inherit across fork()

    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.io.exporters import SUFFIXES, export
    from quantviz.model import load_model

    handle = load_model("sample:digits_cnn")
    variants = (
        ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel"))),
        ModelConfig(
            default=LayerConfig(weight=QuantSpec(bits=8)),
            overrides=(("fc2", LayerConfig(weight=None)),),
        ),
    )

    def answer(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    answer("ready")
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "quit":
            return
        if cmd == "ref":
            fmt, folder = args
            ext = SUFFIXES[fmt][0]
            t0 = time.perf_counter()
            for v in (0, 1):
                export(handle, variants[v], fmt, os.path.join(folder, f"ref{v}{ext}"))
            answer(f"ok {(time.perf_counter() - t0) / 2:.6f}")
        elif cmd == "export":
            fmt, target, v = args
            export(handle, variants[int(v)], fmt, target)
            answer("ok")
        elif cmd == "kill":
            fmt, target, delay = args
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: export until killed; count completed exports
                os.close(r)
                try:
                    i = 0
                    while True:
                        export(handle, variants[i % 2], fmt, target)
                        i += 1
                        os.write(w, struct.pack("B", 1))
                finally:
                    os._exit(1)
            os.close(w)
            time.sleep(float(delay))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            done = 0
            while chunk := os.read(r, 4096):
                done += len(chunk)
            os.close(r)
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                answer(f"error child ended with status {status} before the kill")
            else:
                answer(f"killed {done}")
        else:
            answer(f"error unknown command {cmd!r}")


if __name__ == "__main__":
    main()
