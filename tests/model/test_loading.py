"""load_model: every source kind and every error path."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from quantviz.model import ModelLoadError, TrustRequired, load_model
from quantviz.model.samples import DigitsCNN

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")

ARCH = "quantviz.model.samples:DigitsCNN"
X = torch.rand(3, 1, 8, 8)


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return DigitsCNN().eval()


def _same_outputs(handle, ref: nn.Module) -> None:
    with torch.no_grad():
        torch.testing.assert_close(handle.module(X), ref(X))


def test_sample_source():
    h = load_model("sample:digits_cnn")
    assert h.flavour == "nn" and h.num_classes == 10 and h.default_data == "sample:digits"
    assert tuple(h.example_input.shape) == (1, 1, 8, 8)
    assert h.fqns == ["conv1", "conv2", "fc1", "fc2"]
    assert not h.module.training


def test_unknown_sample():
    with pytest.raises(ModelLoadError, match="unknown sample 'nope'.*digits_cnn"):
        load_model("sample:nope")


def test_torchscript_with_sidecar(tmp_path, cnn):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(cnn), str(path))
    (tmp_path / "m.pt.json").write_text(
        json.dumps({"input_shape": [4, 1, 8, 8], "num_classes": 10})
    )
    h = load_model(str(path))
    assert h.flavour == "torchscript" and h.num_classes == 10
    assert tuple(h.example_input.shape) == (1, 1, 8, 8)
    assert h.fqns == ["conv1", "conv2", "fc1", "fc2"]
    _same_outputs(h, cnn)


def test_torchscript_needs_input_shape(tmp_path, cnn):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(cnn), str(path))
    with pytest.raises(
        ModelLoadError, match=r"m\.ts: cannot tell the model.s input shape; give data"
    ):
        load_model(str(path))
    h = load_model(str(path), input_shape=(1, 1, 8, 8))
    assert len(h.layers) == 4


def test_exported_program(tmp_path, cnn):
    path = tmp_path / "m.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(cnn, (X[:1],)), str(path))
    h = load_model(str(path))  # example input from the program itself
    assert h.flavour == "exported" and h.meta["static_batch"] is True  # exported at batch 1
    assert tuple(h.example_input.shape) == (1, 1, 8, 8)
    assert h.fqns == ["conv1", "conv2", "fc1", "fc2"]
    assert h.layer("conv2").macs == 32 * 8 * 8 * 16 * 9
    with torch.no_grad():
        torch.testing.assert_close(h.module(X[:1]), cnn(X[:1]))


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_state_dict_with_arch(tmp_path, cnn, fmt):
    path = tmp_path / f"w.{fmt}"
    state = {k: v.contiguous() for k, v in cnn.state_dict().items()}
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    h = load_model(f"{path}::{ARCH}", input_shape=(1, 1, 8, 8))
    assert h.flavour == "nn" and h.name == "w"
    _same_outputs(h, cnn)
    h2 = load_model(str(path), arch=ARCH, input_shape=[1, 1, 8, 8])
    _same_outputs(h2, cnn)


def test_checkpoint_dict_with_nested_state_dict(tmp_path, cnn):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": cnn.state_dict()}, str(path))
    h = load_model(str(path), arch=ARCH, input_shape=(1, 1, 8, 8))
    _same_outputs(h, cnn)


def test_arch_module_next_to_weights(tmp_path, cnn):
    (tmp_path / "my_arch_mod.py").write_text(
        "from quantviz.model.samples import DigitsCNN\n\ndef build():\n    return DigitsCNN()\n"
    )
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(path))
    with pytest.raises(TrustRequired, match="my_arch_mod.py"):  # user code: trust first
        load_model(f"{path}::my_arch_mod:build", input_shape=(1, 1, 8, 8))
    h = load_model(f"{path}::my_arch_mod:build", input_shape=(1, 1, 8, 8), trust=True)
    _same_outputs(h, cnn)


def test_state_dict_without_arch(tmp_path, cnn):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(path))
    with pytest.raises(ModelLoadError, match=r"w\.safetensors: holds a state_dict.*::package"):
        load_model(str(path), input_shape=(1, 1, 8, 8))


def test_state_dict_keys_mismatch(tmp_path, cnn):
    state = {k.replace("conv1", "first"): v for k, v in cnn.state_dict().items()}
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "bad.pt"
    torch.save(state, str(path))
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{path}::{ARCH}", input_shape=(1, 1, 8, 8))
    msg = str(info.value)
    assert "bad.pt" in msg and "2 missing" in msg and "conv1.weight" in msg
    assert "unexpected" in msg and "first.weight" in msg and "extra.weight" in msg


def test_state_dict_shape_mismatch(tmp_path, cnn):
    state = dict(cnn.state_dict())
    state["fc2.weight"] = torch.zeros(5, 64)
    path = tmp_path / "shape.pt"
    torch.save(state, str(path))
    with pytest.raises(ModelLoadError, match=r"shape\.pt: state_dict shapes.*fc2\.weight"):
        load_model(f"{path}::{ARCH}", input_shape=(1, 1, 8, 8))


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("no_such_module_xyz:f", "not found"),
        ("quantviz.model.samples:Nope", "has no attribute"),
        ("quantviz.model.samples", "package.module:factory"),
        ("quantviz.model.samples:SAMPLE_DATA_ENV", "not callable"),
        ("quantviz.model.samples:list_samples", "not nn.Module"),
    ],
)
def test_bad_arch(tmp_path, cnn, arch, match):
    path = tmp_path / "w.pt"
    torch.save(cnn.state_dict(), str(path))
    with pytest.raises(ModelLoadError, match=match):
        load_model(f"{path}::{arch}", input_shape=(1, 1, 8, 8))


def test_whole_module_needs_trust(tmp_path, cnn):
    path = tmp_path / "whole.pt"
    torch.save(cnn, str(path))
    with pytest.raises(ModelLoadError, match=r"whole\.pt: .*arbitrary code.*--trust"):
        load_model(str(path), input_shape=(1, 1, 8, 8))
    h = load_model(str(path), trust=True, input_shape=(1, 1, 8, 8))
    assert h.flavour == "nn"
    _same_outputs(h, cnn)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nothere\.pt: no such file"):
        load_model(str(tmp_path / "nothere.pt"))


def test_truncated_files(tmp_path, cnn):
    full = tmp_path / "full.pt"
    torch.jit.save(torch.jit.script(cnn), str(full))
    data = full.read_bytes()
    for name, blob in [("trunc.pt", data[: len(data) // 2]), ("empty.pt", b"")]:
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
            load_model(str(p), input_shape=(1, 1, 8, 8))
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(st))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=r"cut\.safetensors: corrupt or truncated"):
        load_model(f"{cut}::{ARCH}", input_shape=(1, 1, 8, 8))


def test_wrong_kind_of_file(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, I am not a model")
    with pytest.raises(ModelLoadError, match=r"notes\.pt: not a model file"):
        load_model(str(p))
    d = tmp_path / "dir.pt"
    d.mkdir()
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(str(d))


def test_tensor_is_not_a_model(tmp_path):
    p = tmp_path / "t.pt"
    torch.save(torch.zeros(3), str(p))
    with pytest.raises(ModelLoadError, match=r"t\.pt: holds a Tensor"):
        load_model(str(p), arch=ARCH, input_shape=(1, 1, 8, 8))


def test_no_quantizable_layer(tmp_path):
    path = tmp_path / "relu.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4))), str(path))
    with pytest.raises(ModelLoadError, match=r"relu\.pt: no quantizable layer"):
        load_model(str(path), input_shape=(1, 4))


def test_forward_fails_on_wrong_input_shape(tmp_path, cnn):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(cnn), str(path))
    with pytest.raises(ModelLoadError, match=r"forward pass on the example input"):
        load_model(str(path), input_shape=(1, 3, 8, 8))


def test_bad_input_shape_and_device(tmp_path, cnn):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(cnn), str(path))
    with pytest.raises(ModelLoadError, match="input_shape: must be a list of positive"):
        load_model(str(path), input_shape=(1, 0, 8))
    with pytest.raises(ModelLoadError, match="device"):
        load_model("sample:digits_cnn", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model("sample:digits_cnn", device="cuda")


class _Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class _SharedSwishBlock(nn.Module):
    """Calls one activation module twice, as EfficientNet's MBConv calls ``self._swish``."""

    def __init__(self, swish: nn.Module) -> None:
        super().__init__()
        self.expand = nn.Conv2d(4, 8, 1)
        self.project = nn.Conv2d(8, 4, 1)
        self._swish = swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._swish(self.project(self._swish(self.expand(x))))


class _SharedSwishNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._swish = _Swish()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.ModuleList([_SharedSwishBlock(self._swish) for _ in range(2)])
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


def test_exported_program_with_a_module_called_twice(tmp_path):
    """A .pt2 whose blocks reuse one module opens, runs, and quantizes (issue 10)."""
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.eval.apply import apply_config

    torch.manual_seed(0)
    ref = _SharedSwishNet().eval()
    path = tmp_path / "shared.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(ref, (X[:1],)), str(path))
    h = load_model(str(path))
    assert h.fqns == [
        "stem",
        "blocks.0.expand",
        "blocks.0.project",
        "blocks.1.expand",
        "blocks.1.project",
        "head",
    ]
    with torch.no_grad():
        torch.testing.assert_close(h.module(X[:1]), ref(X[:1]))
    # W4 per-tensor symmetric restricted-range weights (scale amax/7), done here in plain torch
    spec = QuantSpec(bits=4, granularity="per_tensor", symmetric=True, restricted_range=True)
    config = ModelConfig(default=LayerConfig(weight=spec))
    expected = _SharedSwishNet().eval()
    expected.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for mod in expected.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                w = mod.weight
                scale = w.abs().max() / 7
                w.copy_(torch.clamp(torch.round(w / scale), -8, 7) * scale)
        with apply_config(h, config):
            got = h.module(X[:1])
        torch.testing.assert_close(got, expected(X[:1]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(h.module(X[:1]), ref(X[:1]))  # restored exactly
