"""HTML report: self-contained, parses, holds the table rows, the charts and the config."""

from __future__ import annotations

import base64
import json
import zlib
from html.parser import HTMLParser

import pytest
from test_export_common import SAMPLES, handle_and_data, mixed_config

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import evaluate, run
from quantviz.io.exporters import export


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell = False
        self.pre = ""
        self._in_pre = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and "data-fqn" in a:
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = True
            self._row.append("")
        if tag == "pre":
            self._in_pre = True

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "td":
            self._cell = False
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data):
        if self._cell and self._row is not None:
            self._row[-1] += data
        if self._in_pre:
            self.pre += data


def _png(w=2, h=2) -> bytes:
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))

    def chunk(t, d):
        return len(d).to_bytes(4, "big") + t + d + zlib.crc32(t + d).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("source", SAMPLES)
def test_report_for_both_samples(tmp_path, source):
    h, data = handle_and_data(source)
    cfg = mixed_config(h, activations=False)
    results = [run(evaluate(h, data, cfg, name="mixed"))]
    for b in (2, 8):
        c = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=b, granularity="per_channel")))
        results.append(run(evaluate(h, data, c, name=f"W{b}")))
    png = _png()
    out = tmp_path / "report.html"
    res = export(h, cfg, "html", out, results=results, images={"histogram": png})
    assert res.paths == [out]
    text = out.read_text()
    p = _Collect()
    p.feed(text)
    p.close()
    assert [r[0] for r in p.rows] == h.fqns
    kinds = {lay.fqn: lay.kind for lay in h.layers}
    for fqn, kind, scheme, nbytes, sqnr in p.rows:
        assert kind == kinds[fqn] and scheme == cfg.resolve(fqn).short()
        assert float(nbytes) > 0 and float(sqnr) > 0
    svgs = [a.get("id") for t, a in p.tags if t == "svg"]
    assert svgs == ["tradeoff", "sqnr"]
    assert sum(1 for t, a in p.tags if t == "circle" and a.get("class") == "point") == 3
    assert any(t == "polyline" and a.get("class") == "pareto" for t, a in p.tags)
    assert any(t == "line" and a.get("class") == "baseline" for t, a in p.tags)
    assert sum(1 for t, a in p.tags if t == "rect" and a.get("class") == "bar") == len(h.fqns)
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    assert imgs == ["data:image/png;base64," + base64.b64encode(png).decode()]
    assert json.loads(p.pre)["layers"][h.fqns[0]]["weight"]["quantizer"] == "kmeans"
    # self-contained: nothing fetched from elsewhere
    assert not any(t in ("script", "link") for t, _ in p.tags)
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_without_results_and_escaping(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    cfg = ModelConfig(
        default=LayerConfig(weight=None), overrides=(("fc*", LayerConfig(QuantSpec(bits=4))),)
    )
    out = tmp_path / "r.html"
    export(h, cfg, "html", out)
    p = _Collect()
    p.feed(out.read_text())
    assert [r[4] for r in p.rows] == ["float", "float", p.rows[2][4], p.rows[3][4]]
    assert not any(a.get("id") == "tradeoff" for _, a in p.tags)
    assert '"fc*"' in p.pre


def test_bad_image_is_refused_and_nothing_written(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / "r.html"
    with pytest.raises(ValueError, match="images: 'plot' is not PNG"):
        export(h, ModelConfig(), "html", out, images={"plot": b"GIF89a"})
    assert list(tmp_path.iterdir()) == []


def test_report_names_the_model_like_the_json_export(tmp_path):
    h, _ = handle_and_data(SAMPLES[1])
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=6)))
    assert cfg.model is None
    export(h, cfg, "html", tmp_path / "r.html")
    export(h, cfg, "json", tmp_path / "c.json")
    p = _Collect()
    p.feed((tmp_path / "r.html").read_text())
    in_report = json.loads(p.pre)["model"]
    assert in_report == h.source == "sample:digits_mobilenet"
    assert in_report == json.loads((tmp_path / "c.json").read_text())["model"]
    # a config that names its model keeps that name
    named = ModelConfig(default=cfg.default, model="elsewhere.pt")
    export(h, named, "html", tmp_path / "n.html")
    p = _Collect()
    p.feed((tmp_path / "n.html").read_text())
    assert json.loads(p.pre)["model"] == "elsewhere.pt"
