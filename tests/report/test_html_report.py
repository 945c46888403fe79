"""HTML reports: their content, `mome predict --report`, and the page in a real headless Chromium (the viewer
draws the image and the mask, no console error, the sections where the layout puts them)."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

import mome
from mome.cli.main import app
from mome.report.html import cohort_html, subject_report
from mome.report.viewer import NIIVUE_FILE, niivue_source

VENDOR = Path(mome.__file__).parent / "report" / "vendor" / "README.md"
WIDTH, HEIGHT = 1280, 3200


def _volume(shape=(40, 48, 36), seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    img[4:-4, 4:-4, 4:-4] = 100 + 10 * rng.standard_normal(tuple(s - 8 for s in shape))
    mask = np.zeros(shape, np.uint8)
    mask[14:24, 18:30, 12:22] = 1
    img[mask > 0] += 150
    return img, mask


def _report(folder: Path, uncertainty=True) -> Path:
    img, mask = _volume()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    stats = {"lesion_volume_ml": 9.6, "lesion_count": 1, "lesion_volumes_ml": [9.6], "brain_volume_ml": 400.0,
             "model": "tiny", "qc": {"warnings": ["volume: <script>alert(1)</script> is implausible"]},
             "expert_weight_share": {"T1": 0.1, "T2": 0.2, "T1ce": 0.1, "FLAIR": 0.5, "DWI": 0.1},
             "implicit_modality": "FLAIR", "uncertainty_scan": 0.25}
    unc = np.where(mask > 0, 0.3, 0.01).astype(np.float32) if uncertainty else None
    return subject_report(folder / "sub-01.html", title="sub-01", sequences=[("FLAIR", img), ("T1", img * 0.5)],
                          mask=mask, affine=affine, stats=stats, uncertainty=unc)


def test_subject_report_content_and_bundled_viewer(tmp_path):
    path = _report(tmp_path)
    text = path.read_text()
    for part in ("<h2>Statistics</h2>", "9.60 ml", "<h2>QC</h2>", "Gate: share of each modality expert",
                 "implicit modality: <b>FLAIR</b>", 'id="slices"', 'id="viewer"', "data:image/png;base64,",
                 f'<script src="{NIIVUE_FILE}"></script>', "mean uncertainty in the lesions"):
        assert part in text, part
    assert "<script>alert(1)</script>" not in text and html.escape("<script>alert(1)</script>") in text
    volumes = json.loads(re.search(r'id="viewer-volumes">(.*?)</script>', text).group(1))
    assert [v["name"] for v in volumes] == ["image.nii.gz", "mask.nii.gz"]
    # the bundled NiiVue is the file the vendor README names, byte for byte
    expected = re.search(r"sha256 of the unzipped file `([0-9a-f]{64})`", VENDOR.read_text()).group(1)
    assert hashlib.sha256(niivue_source()).hexdigest() == expected
    assert (tmp_path / NIIVUE_FILE).read_bytes() == niivue_source()


def test_cohort_page_links_and_escapes():
    rows = [{"participant_id": "sub-01", "session_id": "n/a", "status": "ok", "sequences": "T1,FLAIR",
             "lesion_volume_ml": 2.5, "lesion_count": 3, "qc_warnings": "n/a", "report": "sub-01.html"},
            {"participant_id": "sub-02", "session_id": "ses-1", "status": "missing"}]
    text = cohort_html(rows)
    assert '<a href="sub-01.html">sub-01</a>' in text and "sub-02 ses-1" in text
    assert "2 subject(s)/session(s); 1 segmented; 0 with QC warnings" in text


def test_predict_report_cli(tmp_path, tiny_mome_folder):
    model = tiny_mome_folder
    img, _ = _volume((20, 23, 17))
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / "sub-01_FLAIR.nii.gz"))
    args = ["predict", "-i", str(tmp_path / "sub-01_FLAIR.nii.gz"), "-o", str(tmp_path / "out" / "m.nii.gz"),
            "--model", str(model), "--device", "cpu", "--report"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "m_report.html").is_file() and (tmp_path / "out" / NIIVUE_FILE).is_file()
    assert "FLAIR (sub-01_FLAIR.nii.gz)" in (tmp_path / "out" / "m_report.html").read_text()


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)


def _browser(exe: str, page: Path, *extra) -> subprocess.CompletedProcess:
    """Chromium headless on ``page`` (WebGL2 through SwiftShader, no GPU needed); JS runs for up to 20 s of
    virtual time before the DOM is dumped or the screenshot taken."""
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                           "--enable-unsafe-swiftshader", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
                           "--virtual-time-budget=20000", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=180)


def _status(exe: str, page: Path) -> dict:
    dom = _browser(exe, page, "--dump-dom").stdout
    tag = re.search(r'<p id="viewer-status"([^>]*)>', dom)
    assert tag, dom[-2000:]
    return {k: html.unescape(v) for k, v in re.findall(r'data-([a-z]+)="([^"]*)"', tag.group(1))}


@pytest.mark.skipif(_chromium() is None, reason="no Chromium (Debian: apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path):
    from PIL import Image

    exe = _chromium()
    page = _report(tmp_path)
    status = _status(exe, page)
    assert status["state"] == "drawn" and status["errors"] == "0", status
    assert int(status["lit"]) > 5000 and int(status["red"]) > 50, status  # the image and the mask were drawn
    layout = json.loads(status["layout"])
    tops = [layout[k][1] for k in ("stats", "qc", "slices", "viewer")]
    assert tops == sorted(tops), layout  # expected order: statistics, QC, slices, viewer
    assert layout["slices"][2] > 0.9 * (WIDTH - 100) and layout["viewer"][2] == layout["slices"][2], layout
    assert layout["viewer"][3] >= 400 and layout["viewer"][1] + layout["viewer"][3] < HEIGHT, layout
    shot = tmp_path / "shot.png"
    _browser(exe, page, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)

    def region(key):
        x, y, w, h = (int(round(v)) for v in layout[key])
        return pixels[y:y + h, x:x + w]

    def red(part):
        r, g, b = part[..., 0], part[..., 1], part[..., 2]
        return int(((r > 150) & (r - g > 80) & (r - b > 80)).sum())  # red, also blended over bright tissue

    viewer, slices = region("viewer"), region("slices")
    assert (viewer.sum(axis=2) > 30).mean() > 0.05 and red(viewer) > 50  # the viewer shows image and mask
    assert red(slices) > 200  # the mask overlay of the slice figure
    top = pixels[: int(layout["stats"][1])]
    assert (top.sum(axis=2) < 200).sum() > 500  # the title's dark text on the white page


@pytest.mark.skipif(_chromium() is None, reason="no Chromium (Debian: apt-get install chromium)")
def test_headless_check_sees_a_broken_viewer(tmp_path):
    """The same check on a page whose NiiVue file is missing: the error is caught and counted."""
    page = _report(tmp_path, uncertainty=False)
    (tmp_path / NIIVUE_FILE).unlink()
    status = _status(_chromium(), page)
    assert status["state"] == "error" and int(status["errors"]) >= 1, status
