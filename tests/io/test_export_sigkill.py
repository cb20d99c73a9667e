"""SIGKILL during exports (issue 15, "Files that must never be torn"); marked slow.

For every format a real process exporting in a loop (variants 0, 1, 0, ... of a config to
the same file) is SIGKILLed at random points, 25 times. After each kill the target must be
absent (killed before the first export finished) or byte-identical to a complete export of
variant 0 or 1 — never partial, never a mix (safetensors is one file; no sidecar may
appear). Temporary files a kill leaves behind are swept by the next export once stale.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantviz.io.atomic import STALE_AFTER, is_temp_name
from quantviz.io.exporters import FORMATS, SUFFIXES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a hang guard only

KILLS = 25
WORKER = Path(__file__).with_name("kill_worker.py")


def _canonical(fmt: str, data: bytes) -> object:
    """What makes two files the same export: the bytes, except that safetensors writes its
    metadata mapping in a per-process hash order (the header is compared as JSON)."""
    if fmt != "safetensors":
        return data
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return header, data[8 + n :]


class Server:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.ask(None) == "ready"

    def ask(self, line: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        assert reply and not reply.startswith("error"), f"{line!r}: {reply!r}"
        return reply

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def server():
    if not hasattr(os, "fork"):
        pytest.skip("needs fork()")
    s = Server()
    yield s
    s.close()


def _formats():
    out = []
    for f in FORMATS:
        try:
            if f == "onnx":
                import onnx  # noqa: F401
        except ImportError:
            out.append(pytest.param(f, marks=pytest.mark.skip(reason="onnx not installed")))
            continue
        out.append(f)
    return out


@pytest.mark.parametrize("fmt", _formats())
def test_sigkill_never_tears_an_export(server, tmp_path, fmt):
    ext = SUFFIXES[fmt][0]
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir()
    seconds = float(server.ask(f"ref {fmt} {refs_dir}").split()[1])
    refs = [_canonical(fmt, (refs_dir / f"ref{v}{ext}").read_bytes()) for v in (0, 1)]
    assert refs[0] != refs[1]

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / f"model{ext}"
    rng = random.Random(f"sigkill-{fmt}")
    outcomes = {"absent": 0, "variant 0": 0, "variant 1": 0}
    temp_files_left = 0
    for _ in range(KILLS):
        # anywhere from before the first write to the middle of the third export
        delay = rng.uniform(0.0, 2.5 * seconds + 0.002)
        server.ask(f"kill {fmt} {target} {delay:.6f}")
        names = sorted(os.listdir(out_dir))
        temps = [n for n in names if is_temp_name(n)]
        temp_files_left = max(temp_files_left, len(temps))
        others = [n for n in names if n != target.name and n not in temps]
        assert others == [], f"files other than the target after a kill: {others}"
        if not target.exists():
            outcomes["absent"] += 1
            continue
        raw = target.read_bytes()
        try:
            data = _canonical(fmt, raw)
        except ValueError:  # a torn safetensors header
            data = None
        assert data in refs, (
            f"{fmt}: after a SIGKILL at {delay * 1000:.1f} ms the target ({len(raw)} bytes) "
            "is neither complete export"
        )
        outcomes[f"variant {refs.index(data)}"] += 1
    # kills landed before, between and after completed exports
    assert outcomes["variant 0"] + outcomes["variant 1"] > 0, outcomes

    # whatever temporary files the kills left are swept by the next export once stale
    old = time.time() - STALE_AFTER - 5
    for n in os.listdir(out_dir):
        if is_temp_name(n):
            os.utime(out_dir / n, (old, old))
    server.ask(f"export {fmt} {target} 1")
    assert sorted(os.listdir(out_dir)) == [target.name]
    assert _canonical(fmt, target.read_bytes()) == refs[1]
    print(f"{fmt}: {KILLS} kills -> {outcomes}; at most {temp_files_left} temp file(s) left")
