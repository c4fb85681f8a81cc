"""``report.html``: offline, every image present, the numbers of the CSVs, rebuilt in place."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from captum_polycam.evaluation import EvaluationConfig, evaluate
from captum_polycam.evaluation.html import write_html_report
from captum_polycam.resources import EvaluationError, Preprocessing
from captum_polycam.resources.images import read_image
from tests.conftest import random_photos, read_csv
from tests.evaluation.tiny_models import tiny_classifier

METHODS = ("gradcam", "random")
# Two names with one safe stem ("a_b.png"), and one that HTML must escape.
NAMES = ("a b.png", "a_b.png", "<b>&c.jpg")


class _Page(HTMLParser):
    """The parts of the page the tests read: links, and every element's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.row: str | None = None  # the image of the row being read
        self.method: str | None = None  # the method of the cell being read
        self.areas: dict[tuple[str, str, str], str] = {}
        self.area_texts: dict[tuple[str, str, str], str] = {}
        self.summary: dict[tuple[str, str], str] = {}
        self.intervals: list[str] = []
        self._open: tuple[str, ...] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        self.elements.append((tag, values))
        for key in ("src", "href"):
            if key in values:
                self.references.append(values[key])
        if tag == "tr":
            self.row = values.get("data-image") or values.get("data-method")
        elif tag == "td" and "data-method" in values:
            self.method = values["data-method"]
        elif tag == "td" and "data-metric" in values:
            self.method = values["data-metric"]
        elif tag == "span" and values.get("class") == "area":
            assert self.row is not None and self.method is not None
            kind = values["data-key"].rpartition("-")[2]
            self.areas[self.row, self.method, kind] = values["data-value"]
            self._open = ("area", self.row, self.method, kind)
        elif tag == "span" and values.get("class") == "mean":
            assert self.row is not None and self.method is not None
            self.summary[self.row, self.method] = values["data-value"]
        elif tag == "span" and values.get("class") == "interval":
            self._open = ("interval",)

    def handle_data(self, data: str) -> None:
        if self._open and self._open[0] == "area":
            self.area_texts[self._open[1:]] = data  # type: ignore[index]
        elif self._open:
            self.intervals.append(data)
        self._open = None


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    return page


def _photos(folder: Path, names: tuple[str, ...]) -> Path:
    return random_photos(folder, names, width=28, first_height=20, growth=4)


def _evaluate(images: Path, out: Path) -> Path:
    config = EvaluationConfig(
        model="tiny",
        methods=METHODS,
        n_steps=8,
        batch_size=3,
        preprocessing=Preprocessing(size=(16, 16)),
    )
    evaluate(images, out, config, model=tiny_classifier(), num_workers=0)
    return out


def _photo(folder: Path) -> Callable[[str], Tensor]:
    def photo(name: str) -> Tensor:
        return read_image(folder / name, size=None)[0]

    return photo


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _photos(tmp_path_factory.mktemp("html") / "images", NAMES)


@pytest.fixture(scope="module")
def run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _evaluate(images, tmp_path_factory.mktemp("html") / "out")


@pytest.fixture(scope="module")
def report(run: Path, images: Path) -> Path:
    return write_html_report(run, _photo(images))


def test_every_image_is_a_file_of_the_folder_and_nothing_comes_from_the_network(
    run: Path, report: Path
) -> None:
    assert report == run / "report.html"
    text = report.read_text()
    assert "http://" not in text and "https://" not in text and "//" not in text
    page = _parse(report)
    sources = [values["src"] for tag, values in page.elements if tag == "img"]
    assert "curves.png" in sources
    assert len(sources) == 1 + len(NAMES) * len(METHODS)
    for reference in page.references:
        assert ":" not in reference and not reference.startswith("/"), reference
        path = (run / unquote(reference)).resolve()
        assert path.is_file() and path.is_relative_to(run.resolve()), reference
    # Styles and scripts are inline: no file of another folder, nor of this one, is fetched.
    assert not [v for tag, v in page.elements if tag in ("link", "script") and v]


def test_overlays_have_one_file_per_image_and_method_even_when_names_share_a_stem(
    run: Path, report: Path, images: Path
) -> None:
    for method in METHODS:
        files = sorted((run / "overlays" / method).iterdir())
        assert len(files) == len(NAMES), files
        assert all(f.suffix == ".png" and "<" not in f.name and " " not in f.name for f in files)
    sizes = {Image.open(f).size for f in (run / "overlays" / "gradcam").iterdir()}
    # Over the photo, at the photo's size (the maps are 16 x 16).
    assert sizes == {Image.open(images / name).size for name in NAMES}


def test_the_areas_are_those_of_the_scores_csv(run: Path, report: Path) -> None:
    page = _parse(report)
    for method in METHODS:
        rows = read_csv(run / "csv" / f"scores_tiny_{method}.csv")
        assert [row["image"] for row in rows] == sorted(NAMES)
        for row in rows:
            for kind in ("insertion", "deletion"):
                shown = page.areas[row["image"], method, kind]
                assert shown == row[kind]
                assert page.area_texts[row["image"], method, kind] == (
                    f"{kind} {float(row[kind]):.4f}"
                )
    assert len(page.areas) == len(NAMES) * len(METHODS) * 2


def test_the_summary_is_that_of_summary_csv(run: Path, report: Path) -> None:
    page = _parse(report)
    rows = read_csv(run / "summary.csv")
    assert {(row["method"], row["metric"]) for row in rows} == set(page.summary)
    for row in rows:
        assert float(page.summary[row["method"], row["metric"]]) == float(row["mean"])
    assert page.intervals and all(i.startswith("[") for i in page.intervals)
    text = report.read_text()
    assert "insertion ↑" in text and "deletion ↓" in text


def test_names_are_escaped(report: Path) -> None:
    text = report.read_text()
    assert "<b>&c" not in text and "&lt;b&gt;&amp;c.jpg" in text
    assert {image for image, _, _ in _parse(report).areas} == set(NAMES)


def test_a_rebuild_writes_the_same_bytes_atomically(
    run: Path, report: Path, images: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(run, copy)
    first = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    write_html_report(copy, _photo(images))
    second = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert first == second  # no temporary file left, every byte the same


def test_without_photos_the_overlays_are_the_maps_coloured(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("overlays", "report.html"))
    write_html_report(copy)
    with np.load(copy / "npz" / "tiny_gradcam.npz") as maps:
        heat = maps[NAMES[0]]
    page = _parse(copy / "report.html")
    source = next(
        values["src"]
        for tag, values in page.elements
        if tag == "img" and values["alt"] == f"gradcam on {NAMES[0]}"
    )
    pixels = np.asarray(Image.open(copy / unquote(source)), dtype=np.float32) / 255
    expected = colormaps["jet"](heat)[..., :3]
    assert pixels.shape == (*heat.shape, 3)
    np.testing.assert_allclose(pixels, expected, atol=1 / 255)


def test_one_image_has_no_interval(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", NAMES[:1])
    out = _evaluate(images, tmp_path / "out")
    page = _parse(write_html_report(out, lambda name: None))
    assert page.intervals and set(page.intervals) == {"n/a"}
    rows = read_csv(out / "summary.csv")
    for row in rows:
        assert float(page.summary[row["method"], row["metric"]]) == float(row["mean"])
    assert (out / "overlays" / "gradcam" / "a_b.png.png").is_file()


@pytest.mark.parametrize(
    "missing", ["summary.csv", "summary.md", "run.json", "npz/tiny_random.npz"]
)
def test_a_folder_without_an_artefact_is_refused_naming_it(
    run: Path, tmp_path: Path, missing: str
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(run, copy)
    (copy / missing).unlink()
    with pytest.raises(EvaluationError, match=missing.replace(".", r"\.")):
        write_html_report(copy)


def test_the_photo_may_be_a_tensor_of_another_size(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("overlays", "report.html"))
    write_html_report(copy, lambda name: torch.full((3, 40, 30), 0.5))
    assert {Image.open(f).size for f in (copy / "overlays" / "random").iterdir()} == {(30, 40)}


def test_the_page_files_ship_with_the_package() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
    root = Path(__file__).resolve().parents[2]
    package = root / "captum_polycam"
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["captum_polycam"]
    page = sorted((package / "evaluation" / "page").iterdir())
    assert [p.name for p in page] == ["report.css", "report.html", "report.js"]
    for path in page:
        relative = path.relative_to(package)
        assert any(relative.match(glob) for glob in globs), relative


# The images' rows, top to bottom, by image name.
_ROWS = (
    "return Array.from(document.querySelectorAll('table.images tbody tr'), "
    "row => row.getAttribute('data-image'));"
)


def _chromium() -> Any:
    """A headless Chromium driven by Selenium, or a skip that says what is missing."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (it is in the test extra)"
    )
    browser = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(
            name for name, path in (("Chromium", browser), ("chromedriver", driver)) if not path
        )
        pytest.skip(
            f"no {missing} installed (Debian: apt-get install chromium chromium-driver, "
            "which .ci/run tries)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,800")
    from selenium.common.exceptions import WebDriverException

    try:
        # The installed driver, named: Selenium would otherwise look for one on the network.
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    except WebDriverException as error:
        pytest.skip(f"Chromium did not start: {error.msg}")


def test_in_a_browser_the_images_load_and_a_heading_sorts_the_rows(run: Path, report: Path) -> None:
    browser = _chromium()
    try:
        browser.get(report.as_uri())
        order = browser.execute_script(_ROWS)
        assert order == sorted(NAMES)  # the scores CSVs' order
        for index, method in enumerate(METHODS):
            values = {
                row["image"]: float(row["insertion"])
                for row in read_csv(run / "csv" / f"scores_tiny_{method}.csv")
            }
            button = browser.find_element(
                "css selector", f'table.images thead button[data-key="m{index}-insertion"]'
            )
            assert button.text.startswith("insertion")
            # Ascending, then descending; the sort is stable, so ties keep the rows' order.
            for sign, direction in ((1, "ascending"), (-1, "descending")):
                button.click()
                order = sorted(order, key=lambda name: sign * values[name])
                assert browser.execute_script(_ROWS) == order, (method, direction)
                assert button.get_attribute("data-order") == direction
        # The overlays load lazily: each is brought into view, as a reader scrolling would.
        from selenium.webdriver.support.ui import WebDriverWait

        images = browser.find_elements("css selector", "img")
        assert len(images) == 1 + len(NAMES) * len(METHODS)
        for image in images:
            browser.execute_script("arguments[0].scrollIntoView();", image)
            WebDriverWait(browser, 30).until(
                lambda b, image=image: b.execute_script("return arguments[0].complete;", image)
            )
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src'));"
        )
        assert broken == []
    finally:
        browser.quit()
