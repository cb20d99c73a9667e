"""State dicts as checkpoints really are: buffers the architecture no longer keeps.

all-MiniLM-L6-v2's ``model.safetensors`` holds ``embeddings.position_ids``, which current
transformers registers as a non-persistent buffer: it is skipped with a warning listing it,
as transformers does. Missing and mis-shaped weights stay errors naming them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from quantviz.model import ModelLoadError, load_model

ARCH_CODE = """
import torch
from torch import nn


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(32, 8)
        self.proj = nn.Linear(8, 4)
        self.register_buffer("position_ids", torch.arange(6)[None], persistent=False)
        self.register_buffer("scale", torch.ones(1), persistent=False)

    def forward(self, x):
        return self.proj(self.word(x) * self.scale)


def build():
    return Embedder()
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "mini_arch.py").write_text(ARCH_CODE)
    return tmp_path


def _state(**extra: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    st = {
        "word.weight": torch.randn(32, 8),
        "proj.weight": torch.randn(4, 8),
        "proj.bias": torch.randn(4),
    }
    st.update(extra)
    return st


def _open(path: Path) -> object:
    return load_model(
        f"{path}::mini_arch:build", trust=True, input_shape=(1, 6), input_dtype="int64"
    )


def test_stale_buffers_are_skipped_with_a_warning(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = _state(**{"position_ids": torch.arange(6)[None], "scale": torch.full((1,), 2.0)})
    path = folder / "model.safetensors"
    save_file(st, str(path))
    with caplog.at_level(logging.WARNING, logger="quantviz.model"):
        h = _open(path)
    msgs = [r.getMessage() for r in caplog.records if r.name == "quantviz.model"]
    assert len(msgs) == 1
    assert "model.safetensors" in msgs[0] and "ignored 2 buffer(s)" in msgs[0]
    assert "position_ids" in msgs[0] and "scale" in msgs[0]
    # the weights are the file's; the module's own buffers are untouched
    assert torch.equal(h.module.word.weight, st["word.weight"])  # type: ignore[attr-defined]
    assert torch.equal(h.module.scale, torch.ones(1))  # type: ignore[attr-defined]


def test_an_integer_tensor_the_module_does_not_hold_is_a_buffer(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = folder / "model.safetensors"
    save_file(_state(**{"embeddings.token_ids": torch.arange(4)}), str(path))
    with caplog.at_level(logging.WARNING, logger="quantviz.model"):
        _open(path)
    assert any("embeddings.token_ids" in r.getMessage() for r in caplog.records)


def test_unexpected_float_weights_missing_and_misshaped_stay_errors(folder: Path) -> None:
    path = folder / "model.safetensors"
    save_file(_state(**{"extra.weight": torch.randn(3, 3)}), str(path))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: .*1 unexpected.*extra\.weight"):
        _open(path)
    st = _state(position_ids=torch.arange(6)[None])
    del st["proj.bias"]
    save_file(st, str(path))
    with pytest.raises(ModelLoadError, match=r"1 missing \(e\.g\. proj\.bias\)"):
        _open(path)
    save_file(_state(**{"proj.weight": torch.randn(5, 8)}), str(path))
    with pytest.raises(ModelLoadError, match=r"proj\.weight \(5, 8\) vs \(4, 8\)"):
        _open(path)
