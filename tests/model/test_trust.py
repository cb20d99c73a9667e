"""No code from a model file (or from next to it) runs without trust.

Every hostile input here is built by the test: a real ``torch.export.save``'d archive with one
entry replaced, a module file next to the weights, a pickle whose ``__reduce__`` writes a
marker file. Each is first shown to be genuinely hostile (with ``trust=True`` the marker
appears), then shown to be refused with :class:`TrustRequired` without trust, marker absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from pt2_tools import edit_json, rewrite
from safetensors.torch import save_file
from torch import nn

from quantviz.io.session_file import SessionData, load_session, save_session
from quantviz.model import ModelLoadError, TrustRequired, load_model
from quantviz.model.pt2 import check_expr, check_strings, load_exported_program
from quantviz.model.samples import DigitsCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

ARCH = "quantviz.model.samples:DigitsCNN"
X = torch.rand(3, 1, 8, 8)


class Marker:
    """Unpickling this writes ``path`` (what an attacker's payload would do)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').close()",))


def evil_pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(Marker(marker), buf)
    return buf.getvalue()


class WithConst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.register_buffer("scale", torch.full((3,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).mean((2, 3))
        return self.fc(h) * self.scale + torch.tensor([0.5, 0.0, -0.5])


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(WithConst().eval(), (X[:1],)), str(path))
    return path


def _pickled_weight(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    def flag(doc: dict) -> None:
        doc["config"]["conv.weight"]["use_pickle"] = True

    return {
        "data/weights/weight_0": lambda _: evil_pickle(marker),
        "data/weights/model_weights_config.json": edit_json(flag),
    }


def _pickled_constant(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    def flag(doc: dict) -> None:
        (entry,) = doc["config"].values()
        entry["use_pickle"] = True

    return {
        "data/constants/tensor_0": lambda _: evil_pickle(marker),
        "data/constants/model_constants_config.json": edit_json(flag),
    }


def _opaque_constant(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    import pickle

    def flag(doc: dict) -> None:
        (entry,) = doc["config"].values()
        entry["path_name"] = "opaque_obj_0"
        entry["use_pickle"] = True

    return {
        "+data/constants/opaque_obj_0": lambda _: pickle.dumps(Marker(marker)),
        "data/constants/model_constants_config.json": edit_json(flag),
    }


def _guard(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    def add(doc: dict) -> None:
        doc["guards_code"] = [f"open({str(marker)!r}, 'w').close() is None"]

    return {"models/model.json": edit_json(add)}


def _fqn(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    """A buffer name that fx writes unescaped into ``getattr(self, "...")``."""
    assert "." not in str(marker)
    evil = f'conv"),getattr(__import__("os"),"system")("touch {marker}"),getattr(self,"conv'

    def sig(doc: dict) -> None:
        for spec in doc["graph_module"]["signature"]["input_specs"]:
            if spec.get("buffer", {}).get("buffer_name") == "scale":
                spec["buffer"]["buffer_name"] = evil

    def cfg(doc: dict) -> None:
        doc["config"][evil] = doc["config"].pop("scale")

    return {
        "models/model.json": edit_json(sig),
        "data/weights/model_weights_config.json": edit_json(cfg),
    }


HOSTILE = {
    "module path injected into generated code": _fqn,
    "sample_inputs pickle": lambda m: {"data/sample_inputs/model.pt": lambda _: evil_pickle(m)},
    "pickled weight entry": _pickled_weight,
    "pickled constant entry": _pickled_constant,
    "opaque constant": _opaque_constant,
    "guards_code": _guard,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_pt2_refused_without_trust(tmp_path, good_pt2, case):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt2"
    rewrite(good_pt2, evil, HOSTILE[case](marker))
    with pytest.raises(TrustRequired) as info:
        load_model(str(evil))
    assert not marker.exists(), f"{case}: code ran without trust"
    assert info.value.file == str(evil) and "--trust" in str(info.value)
    # the same archive is genuinely hostile: torch's own loader runs it
    _torch_opens(evil)
    assert marker.exists(), f"{case}: the crafted archive is not hostile, the test proves nothing"


def _torch_opens(path: Path) -> None:
    """What torch does with the archive: load it and call the program once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ep = torch.export.load(str(path))
        except Exception:
            return  # the payload ran first; what torch makes of the rest does not matter
        for build in (ep.module, lambda: torch.export.unflatten(ep)):
            with contextlib.suppress(Exception):
                build()(X[:1])


def test_hostile_sympy_expression(tmp_path):
    """A symbolic shape expression is Python eval for sympy; only plain arithmetic passes."""
    path = tmp_path / "dyn.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(
            nn.Sequential(nn.Flatten(), nn.Linear(64, 5)),
            (X,),
            dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}},
        )
        torch.export.save(ep, str(path))
    h = load_model(str(path))  # the real expressions are accepted
    assert h.meta["static_batch"] is False
    torch.testing.assert_close(h.module(X), ep.module()(X))

    marker = tmp_path / "pwned"
    payload = f"__import__('builtins').open({str(marker)!r}, 'w').close() or "

    def inject(doc: dict) -> None:
        text = json.dumps(doc).replace('"expr_str": "', f'"expr_str": "{payload}', 1)
        doc.clear()
        doc.update(json.loads(text))

    evil = tmp_path / "evil.pt2"
    rewrite(path, evil, {"models/model.json": edit_json(inject)})
    with pytest.raises(TrustRequired, match="symbolic shape expression"):
        load_model(str(evil))
    assert not marker.exists()
    _torch_opens(evil)
    assert marker.exists()  # torch.export.load evaluates it


def test_strings_that_could_break_out_of_generated_code():
    assert check_strings({"buffer_name": "layers.0.weight", "fqn": "block@1"}) is None
    assert check_strings({"stack_trace": 'File "/a.py", line 3, in f\n    y = g(x)'}) is None
    assert check_strings({"in_spec": json.dumps([1, {"type": "builtins.tuple"}])}) is None
    assert "holds" in check_strings({"buffer_name": 'a")+x+("'})
    assert "holds" in check_strings({"stack_trace": "File x\r    evil()"})
    assert "holds" in check_strings({"custom": json.dumps({"k": "\nevil()"})})
    assert "key" in check_strings({'we"ird': 1})
    assert "not JSON" in check_strings({"out_spec": "{"})


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Mul(Integer(2), Symbol('s77', positive=True, integer=True))",
        "FloorDiv(s0 + 3, 2) * Max(s1, 1) - Mod(s0, 4)",
        "Eq(s0, 1) | (s1 >= 2)",
        "PowByNatural(s0, 2) + s1**-2 + Pow(Symbol('s2', integer=True), s0)",
    ],
)
def test_plain_expressions_pass(expr):
    assert check_expr(expr) is None


def _sym_exprs():
    """Shape expressions as torch builds them: symbols, integers, torch's sympy functions."""
    import sympy
    from hypothesis import strategies as st
    from torch.utils._sympy import functions as F

    leaves = st.one_of(
        st.integers(min_value=-100, max_value=100).map(sympy.Integer),  # 8 leaves < 2**63
        st.integers(min_value=0, max_value=999).map(
            lambda i: sympy.Symbol(f"s{i}", positive=True, integer=True)
        ),
    )
    binary = [
        sympy.Add,
        sympy.Mul,
        sympy.Max,
        sympy.Min,
        F.FloorDiv,
        F.PythonMod,
        F.CeilDiv,
        sympy.Eq,
        sympy.Lt,
    ]

    def extend(children):
        return st.tuples(st.sampled_from(binary), children, children).map(
            lambda t: _safe_apply(t[0], t[1], t[2])
        )

    return st.recursive(leaves, extend, max_leaves=8)


def _safe_apply(fn, a, b):
    try:
        return fn(a, b)
    except Exception:  # sympy refuses some combinations (e.g. arithmetic on a boolean)
        return a


@given(expr=_sym_exprs())
@settings(max_examples=150, deadline=None)
def test_torch_shape_expressions_pass(expr):
    """No false refusals: torch's own serialised forms (srepr and str) are plain arithmetic."""
    import sympy

    assert check_expr(sympy.srepr(expr)) is None, sympy.srepr(expr)
    assert check_expr(str(expr)) is None, str(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('x')",
        "Symbol('x').__class__",
        "open('f')",
        "Symbol('__class__')",
        "(lambda: 1)()",
        "Symbol('a')[0]",
        "Symbol(b'x')",
        "Integer(2)(3)",
        "Max(*s0)",
        "exec('x')",
        "Integer(10) ** Integer(1000000000)",  # exact arithmetic: a hang, not code
        "Pow(Integer(10), Mul(Integer(99999), Integer(99999)))",
        "PowByNatural(s0, s1 * 0 + 10 ** 30)",
        "Integer(123456789012345678901234567890)",
    ],
)
def test_code_expressions_refused(expr):
    assert check_expr(expr) is not None


def test_untrusted_pt2_matches_torch_export_load(good_pt2):
    """Our weights-only reader gives the same program as torch's: weights, constants, outputs."""
    ours = load_exported_program(good_pt2, trust=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.export.load(str(good_pt2))
    assert set(ours.state_dict) == set(ref.state_dict)
    for k, v in ref.state_dict.items():
        torch.testing.assert_close(ours.state_dict[k], v)
    assert set(ours.constants) == set(ref.constants)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(ours.module()(x), ref.module()(x))
    h = load_model(str(good_pt2))
    torch.testing.assert_close(h.module(x), ref.module()(x))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(
            x.sum() > 0, lambda x: self.layers[0](x), lambda x: self.layers[1](x), (x,)
        )


def test_control_flow_program_loads_untrusted(tmp_path):
    """Higher-order ops (torch.cond subgraphs) and list-indexed module paths are not refused."""
    torch.manual_seed(0)
    path = tmp_path / "cond.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(Branchy().eval(), (torch.rand(2, 4),)), str(path))
        ref = torch.export.load(str(path)).module()
    ours = load_exported_program(path, trust=False).module()
    for x in (torch.rand(2, 4), -torch.rand(2, 4)):  # both branches
        torch.testing.assert_close(ours(x), ref(x))


def test_corrupt_pt2_entry_is_a_clear_error(tmp_path, good_pt2):
    bad = tmp_path / "bad.pt2"
    rewrite(good_pt2, bad, {"models/model.json": lambda _: b"{not json"})
    with pytest.raises(ModelLoadError, match=r"bad\.pt2: .*model\.json: not valid JSON"):
        load_model(str(bad))


def test_pt2_weight_claiming_too_much(tmp_path, good_pt2):
    def grow(doc: dict) -> None:
        meta = doc["config"]["conv.weight"]["tensor_meta"]
        meta["sizes"] = [{"as_int": 1 << 20}] * 4  # 2**80 floats

    bad = tmp_path / "huge.pt2"
    rewrite(good_pt2, bad, {"data/weights/model_weights_config.json": edit_json(grow)})
    with pytest.raises(ModelLoadError, match=r"huge\.pt2: the archive's weights claims .*PiB"):
        load_model(str(bad))


# -- pickles in every other file kind ---------------------------------------------------------
@pytest.mark.parametrize("name", ["w.safetensors", "w.pt", "w.pth", "w.npz"])
def test_pickle_in_any_model_file_needs_trust(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(evil_pickle(marker))
    with pytest.raises(TrustRequired) as info:
        load_model(f"{path}::{ARCH}", input_shape=(1, 1, 8, 8))
    assert not marker.exists()
    assert "pickled Python objects" in info.value.reason
    assert "the pickle calls exec" in info.value.reason  # names what it wanted to call


def test_legacy_pickle_needs_trust(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    torch.save(Marker(marker), str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(TrustRequired):
        load_model(str(path), input_shape=(1, 1, 8, 8))
    assert not marker.exists()


def test_whole_module_is_trust_required(tmp_path):
    torch.manual_seed(0)
    cnn = DigitsCNN().eval()
    path = tmp_path / "whole.pt"
    torch.save(cnn, str(path))
    with pytest.raises(TrustRequired, match=r"whole\.pt: holds pickled Python objects"):
        load_model(str(path), input_shape=(1, 1, 8, 8))
    h = load_model(str(path), trust=True, input_shape=(1, 1, 8, 8))
    torch.testing.assert_close(h.module(X), cnn(X))


# -- architecture modules ------------------------------------------------------------------
MODULE_SRC = textwrap.dedent(
    """
    open({marker!r}, "w").close()
    from quantviz.model.samples import DigitsCNN

    def build():
        return DigitsCNN()
    """
)


@pytest.fixture
def weights(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in DigitsCNN().state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("layout", ["module", "package"])
def test_arch_next_to_weights_needs_trust(tmp_path, weights, layout):
    marker = tmp_path / "imported"
    name = f"qv_arch_{layout}_{tmp_path.name[-8:].replace('-', '_')}"
    if layout == "module":
        (tmp_path / f"{name}.py").write_text(MODULE_SRC.format(marker=str(marker)))
        mod = name
    else:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        (tmp_path / name / "net.py").write_text(MODULE_SRC.format(marker=str(marker) + "2"))
        mod = f"{name}.net"
    before = list(sys.path)
    with pytest.raises(TrustRequired) as info:
        load_model(f"{weights}::{mod}:build", input_shape=(1, 1, 8, 8))
    assert not marker.exists() and mod not in sys.modules
    assert sys.path == before
    assert info.value.file == str(weights) and "not an installed package" in info.value.reason
    assert str(tmp_path) in info.value.reason  # says where it would come from
    try:
        h = load_model(f"{weights}::{mod}:build", input_shape=(1, 1, 8, 8), trust=True)
        assert marker.exists() and len(h.layers) == 4
        assert sys.path == before
        # imported once with trust, it stays user code for the next untrusted load
        with pytest.raises(TrustRequired, match="imported earlier with trust"):
            load_model(f"{weights}::{mod}:build", input_shape=(1, 1, 8, 8))
    finally:
        for m in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[m]


def _load_in_subprocess(cwd: Path, source: str, extra_path: list[Path]) -> str:
    code = textwrap.dedent(
        f"""
        import sys
        from quantviz.model import TrustRequired, load_model
        assert sys.path[0] == ''  # python -c: the cwd is on sys.path
        try:
            load_model({source!r}, input_shape=(1, 1, 8, 8))
        except TrustRequired as exc:
            print("REFUSED", exc.reason)
        else:
            print("LOADED")
        """
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *map(str, extra_path)])}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_arch_in_cwd_is_never_imported_untrusted(tmp_path, weights):
    """``python -c`` / ``python -m`` put the cwd on sys.path: a module there is still user code."""
    work = tmp_path / "cwd"
    work.mkdir()
    marker = tmp_path / "imported"
    (work / "qv_cwd_arch.py").write_text(MODULE_SRC.format(marker=str(marker)))
    out = _load_in_subprocess(work, f"{weights}::qv_cwd_arch:build", [])
    assert out.startswith("REFUSED") and "qv_cwd_arch.py" in out, out
    assert not marker.exists()


def test_arch_on_explicit_pythonpath_is_the_environment(tmp_path, weights):
    """A folder the user put on PYTHONPATH is theirs on purpose, even below the cwd."""
    src = tmp_path / "cwd" / "src"
    src.mkdir(parents=True)
    marker = tmp_path / "imported"
    (src / "qv_env_arch.py").write_text(MODULE_SRC.format(marker=str(marker)))
    out = _load_in_subprocess(src.parent, f"{weights}::qv_env_arch:build", [src])
    assert out.startswith("LOADED"), out
    assert marker.exists()


def test_installed_arch_needs_no_trust(weights):
    h = load_model(f"{weights}::{ARCH}", input_shape=(1, 1, 8, 8))
    assert len(h.layers) == 4


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("qv_no_such_module_anywhere:f", "not found"),
        ("os.path:join", "calling .*failed"),
        ("quantviz.model.samples:__class__", "dunder"),
        ("quantviz..samples:f", "package.module:factory"),
    ],
)
def test_bad_arch_is_model_load_error(weights, arch, match):
    with pytest.raises(ModelLoadError, match=match) as info:
        load_model(f"{weights}::{arch}", input_shape=(1, 1, 8, 8))
    assert not isinstance(info.value, TrustRequired)


# -- the same sources named by a session file --------------------------------------------------
def test_session_file_naming_hostile_sources(tmp_path, good_pt2, weights):
    """The GUI opens a session's model through load_model: the same refusals apply."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt2"
    rewrite(good_pt2, evil, {"data/sample_inputs/model.pt": lambda _: evil_pickle(marker)})
    (weights.parent / "qv_session_arch.py").write_text(MODULE_SRC.format(marker=str(marker)))
    for source in (str(evil), f"{weights}::qv_session_arch:build"):
        sess = tmp_path / "s.quantviz"
        save_session(sess, SessionData(model=source, data=None))
        loaded = load_session(sess)
        assert loaded.model == source
        with pytest.raises(TrustRequired):
            load_model(loaded.model, input_shape=(1, 1, 8, 8))
        assert not marker.exists()


# -- end to end through the command line -------------------------------------------------------
@pytest.mark.slow
def test_cli_refuses_hostile_sources_in_one_line(tmp_path, good_pt2, weights):
    """`quantviz eval --model ...` on each hostile source: exit 2, one line, no code run."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt2"
    rewrite(good_pt2, evil, {"data/sample_inputs/model.pt": lambda _: evil_pickle(marker)})
    (weights.parent / "qv_cli_arch.py").write_text(MODULE_SRC.format(marker=str(marker)))
    whole = tmp_path / "whole.pt"
    whole.write_bytes(evil_pickle(marker))
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    for source in (str(evil), f"{weights}::qv_cli_arch:build", str(whole)):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "quantviz",
                "eval",
                "--model",
                source,
                "--data",
                "sample:digits",
            ],
            cwd=weights.parent,  # the arch module sits in the cwd too: still not imported
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2, (source, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and "--trust" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not marker.exists(), source
