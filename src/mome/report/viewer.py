"""The interactive 3D viewer of the HTML reports: NiiVue (bundled, BSD-2-Clause; vendor/README.md).

A report loads ``niivue.umd.js`` from its own folder with a classic ``<script src>`` (module scripts and
``fetch`` are refused on ``file://`` pages, classic scripts are not), and the volumes from base64 strings in
the page itself, so the report opens offline by double-click. Volumes are stored compactly: the image as
uint8 (its 1st-99th percentile range) and the mask as uint8, both in RAS order on a grid of at most
:data:`MAX_VIEWER_DIM` voxels per axis (integer subsampling), gzipped.
"""

from __future__ import annotations

import base64
import gzip
import importlib.resources
from pathlib import Path

import numpy as np

NIIVUE_VERSION = "0.69.0"
NIIVUE_FILE = "niivue.umd.js"
MAX_VIEWER_DIM = 192


def niivue_source() -> bytes:
    """The bundled NiiVue UMD build (unzipped)."""
    packed = importlib.resources.files("mome.report").joinpath("vendor", f"{NIIVUE_FILE}.gz").read_bytes()
    return gzip.decompress(packed)


def write_niivue(folder: Path) -> Path:
    """``folder/niivue.umd.js`` (written, atomically, unless already there with the same bytes)."""
    from mome.utils.atomic import atomic_path

    path = Path(folder) / NIIVUE_FILE
    source = niivue_source()
    if path.is_file() and path.stat().st_size == len(source) and path.read_bytes() == source:
        return path
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(source)
    return path


def volume_base64(data: np.ndarray, affine: np.ndarray, kind: str) -> str:
    """A volume as a base64 gzipped NIfTI for NiiVue: ``kind`` ``image`` (scaled to uint8) or ``mask`` (0/1)."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data), affine))
    arr = np.asarray(img.dataobj)
    step = int(np.ceil(max(arr.shape) / MAX_VIEWER_DIM))
    new_affine = img.affine.copy()
    if step > 1:
        arr = arr[::step, ::step, ::step]
        new_affine[:3, :3] = img.affine[:3, :3] * step
    if kind == "mask":
        out = (arr > 0).astype(np.uint8)
    else:
        arr = arr.astype(np.float32)
        inside = arr[arr != 0]
        lo, hi = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
        out = np.clip((arr - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
        out[arr == 0] = 0
    nii = nib.Nifti1Image(out, new_affine)
    nii.header.set_data_dtype(np.uint8)
    return base64.b64encode(gzip.compress(nii.to_bytes(), compresslevel=6, mtime=0)).decode("ascii")


#: first script of a page: counts the page's errors (uncaught exceptions, rejected promises, console.error,
#: resources that failed to load) into #viewer-status's data-errors, and shows the last one
ERROR_SCRIPT = """
window.momeErrors = [];
function momeError(text) {
  window.momeErrors.push(String(text));
  const status = document.getElementById('viewer-status');
  if (status) { status.dataset.errors = String(window.momeErrors.length); status.title = String(text); }
}
window.addEventListener('error', (e) => momeError(e.message || ('failed to load ' + (e.target.src || e.target.href))),
                        true);
window.addEventListener('unhandledrejection', (e) => momeError(e.reason));
const momeConsoleError = console.error.bind(console);
console.error = (...args) => { momeError(args.join(' ')); momeConsoleError(...args); };
"""

#: the page's viewer script: loads the volumes, draws, and reports in #viewer-status whether pixels were drawn
#: (lit: non-black pixels; red: mask-coloured pixels) and where the page's sections lie (data-layout), which
#: the headless-browser test reads
VIEWER_SCRIPT = """
(async () => {
  const status = document.getElementById('viewer-status');
  status.dataset.errors = String(window.momeErrors.length);
  try {
    if (typeof niivue === 'undefined') { throw new Error('niivue.umd.js did not load'); }
    const nv = new niivue.Niivue({backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false,
                                  crosshairColor: [0.2, 0.6, 1.0, 1.0]});
    await nv.attachTo('viewer');
    const volumes = JSON.parse(document.getElementById('viewer-volumes').textContent);
    for (const v of volumes) {
      const image = await niivue.NVImage.loadFromBase64({base64: v.base64, name: v.name, colormap: v.colormap,
        opacity: v.opacity, cal_min: v.cal_min, cal_max: v.cal_max});
      nv.addVolume(image);
    }
    nv.setSliceType(nv.sliceTypeMultiplanar);
    nv.drawScene();
    const gl = nv.gl;
    const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
    const px = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    let lit = 0, red = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i] + px[i + 1] + px[i + 2] > 30) lit++;
      if (px[i] > 150 && px[i] - px[i + 1] > 80 && px[i] - px[i + 2] > 80) red++;
    }
    const layout = {};
    for (const id of ['stats', 'qc', 'slices', 'viewer']) {
      const r = document.getElementById(id).getBoundingClientRect();
      layout[id] = [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
    }
    status.dataset.layout = JSON.stringify(layout);
    status.dataset.state = 'drawn';
    status.dataset.lit = String(lit);
    status.dataset.red = String(red);
    status.textContent = `viewer: ${volumes.length} volume(s) drawn`;
  } catch (err) {
    status.dataset.state = 'error';
    status.textContent = 'viewer error: ' + err;
    console.error(err);
  }
})();
"""
