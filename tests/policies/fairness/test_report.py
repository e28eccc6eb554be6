"""The HTML report: rendered, read back through its `data-key` cells and checked against the audit and against
fairlearn; its plots decode as images; and a real browser renders it (when chromium is installed)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm

from gensdk.errors import DataError
from gensdk_fairness import audit_images, audit_tables, audit_texts, render_html, write_html


class KeyedCells(HTMLParser):
    """Collects the text of every element with a data-key attribute, and every embedded image."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.images: list[bytes] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img" and (found.get("src") or "").startswith("data:image/png;base64,"):
            self.images.append(base64.b64decode(found["src"].split(",", 1)[1]))
        if tag != "img":
            self._open.append(found.get("data-key"))
            if found.get("data-key"):
                self.values[found["data-key"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag != "img" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        key = next((k for k in reversed(self._open) if k), None)
        if key:
            self.values[key] += data


def _read(html: str) -> KeyedCells:
    parser = KeyedCells()
    parser.feed(html)
    return parser


def _number(text: str) -> float:
    return float(text.strip())


@pytest.fixture(scope="module")
def table_audit(adult: pd.DataFrame) -> dict[str, Any]:
    fake = adult.copy()
    rich_women = np.flatnonzero((fake["sex"] == "Female") & (fake["income"] == ">50K"))
    fake.loc[np.random.default_rng(1).choice(rich_women, len(rich_women) // 2, replace=False), "income"] = "<=50K"
    return audit_tables(adult, fake, sensitive="sex", target="income", positive=">50K", n_boot=200).to_dict()


@pytest.fixture(scope="module")
def table_html(table_audit: dict[str, Any]) -> str:
    return render_html(table_audit)


def test_table_report_shows_the_audit_numbers(table_audit: dict[str, Any], table_html: str, adult: pd.DataFrame) -> None:
    cells = _read(table_html)
    assert cells.values["verdict"] == table_audit["verdict"].upper() == "BREACH"
    y = (adult["income"] == ">50K").astype(int)
    real_gap = fm.demographic_parity_difference(y, y, sensitive_features=adult["sex"])
    assert _number(cells.values["parity.real.dp_difference"]) == pytest.approx(real_gap, abs=5e-5)
    for which in ("real", "synthetic"):
        for key in ("dp_difference", "dp_ratio"):
            assert _number(cells.values[f"parity.{which}.{key}"]) == round(table_audit["parity"][which][key], 4)
        for group, figures in table_audit["selection_rates"][which].items():
            assert _number(cells.values[f"selection.{which}.{group}"]) == round(figures["selection_rate"], 4)
    assert _number(cells.values["parity.amplification"]) == round(table_audit["parity"]["amplification"], 4)
    assert cells.values["parity.trend"] == "amplified"
    assert _number(cells.values["eo.synthetic.eo_difference"]) == round(table_audit["equalized_odds"]["synthetic"]["eo_difference"], 4)
    for check in table_audit["checks"]:
        assert _number(cells.values[f"check.{check['name']}.value"]) == round(check["value"], 4)
        assert cells.values[f"check.{check['name']}.passed"] == ("pass" if check["passed"] else "BREACH")


def test_plots_are_real_pngs(table_html: str) -> None:
    from PIL import Image

    images = _read(table_html).images
    assert len(images) == 4  # representation, selection rates, one per classifier
    for data in images:
        picture = Image.open(io.BytesIO(data))
        assert picture.format == "PNG" and picture.width > 300
        assert np.asarray(picture.convert("L")).std() > 10  # bars and text, not a blank canvas


def test_text_and_image_reports(digits_pixels: Any, tmp_path: Path) -> None:
    records = [{"domain": "gender", "group": g, "text": t} for g, t in (("woman", "an awful liar"), ("man", "a kind friend")) for _ in range(10)]
    text = audit_texts(records, scorers=["sentiment", "length"], n_boot=100, n_permutations=100).to_dict()
    cells = _read(render_html(text))
    metric = text["domains"]["gender"]["metrics"]["sentiment"]
    assert _number(cells.values["text.gender.sentiment.disparity"]) == round(metric["disparity"], 4)
    assert _number(cells.values["text.gender.sentiment.woman.mean"]) == round(metric["by_group"]["woman"]["mean"], 4)
    assert cells.values["text.gender.woman.outputs"] == "10"
    image = audit_images(digits_pixels, "digits", n_boot=100).to_dict()
    cells = _read(write_html(image, tmp_path / "sub" / "images.html").read_text(encoding="utf-8"))
    assert _number(cells.values["image.total_variation"]) == round(image["total_variation"], 4)
    assert _number(cells.values["image.3.share"]) == round(image["by_class"]["3"]["share"], 4)


@pytest.fixture(scope="module")
def digits_pixels() -> Any:
    from gensdk.images import load_digits

    return load_digits().pixels[:300]


def test_untrusted_text_is_escaped() -> None:
    records = [{"domain": "<b>d</b>", "group": g, "text": "x"} for g in ("<script>alert(1)</script>", "b") for _ in range(3)]
    html = render_html(audit_texts(records, scorers=["length"], n_boot=50, n_permutations=100).to_dict())
    assert "<script>" not in html and "<b>d</b>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_unknown_audit_kind_is_refused() -> None:
    with pytest.raises(DataError, match="kind 'video'"):
        render_html({"kind": "video"})


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_a_real_browser_renders_the_report(table_html: str, tmp_path: Path) -> None:
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(table_html, encoding="utf-8")
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400",
                    f"--screenshot={shot}", page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[:2] == (2400, 1280)
    # The red BREACH badge (#b3261e) near the top, and the plots' blue and orange bars further down.
    badge = np.all(np.abs(picture[:200].astype(int) - [179, 38, 30]) < 12, axis=-1)
    blue = np.all(np.abs(picture.astype(int) - [31, 119, 180]) < 12, axis=-1)
    orange = np.all(np.abs(picture.astype(int) - [255, 127, 14]) < 12, axis=-1)
    assert badge.sum() > 500 and blue.sum() > 5000 and orange.sum() > 5000
    assert re.search(r"<h2>4\. Equalized odds", page.read_text(encoding="utf-8"))


def test_a_missing_plotting_library_names_the_extra(table_audit: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from gensdk.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # what an install without matplotlib looks like
    with pytest.raises(MissingDependencyError, match=r"'matplotlib'.*pip install 'gensdk\[fairness\]'"):
        render_html(table_audit)
