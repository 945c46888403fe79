"""Rigid then affine registration of a native scan to the MNI152 crop with antspyx.

Recipe (measured, see ``design.md``): a plain affine registration of a skull-on scan to the skull-stripped
template shrinks the head onto the brain. So: (1) rigid registration of the whole scan; (2) the template
brain mask, eroded by 3 voxels, is pulled back into native space with the inverse rigid transform and
multiplies the scan (a rough skull strip); (2b) one more rigid pass on that stripped scan, and a new
strip with it; (3) affine registration of the stripped scan, starting from the rigid result. The final
transform is one ANTs affine ``.mat`` (ANTs collapses the initial rigid into it) that maps MNI points
to native points, i.e. it resamples native images onto the MNI grid.

Measured on TCGA-FG-6692 T1 (skull on, 5.5 mm slices; NCC with the template in its brain mask,
unregistered 0.06; FAST settings, 2 shared cores): without step 2b, 4 of ~12 runs ended in a poor
optimum (NCC 0.08-0.17 instead of 0.28-0.31); with it, 4 runs gave 0.22-0.30. ANTs' metric sampling
is random and multithreaded, so repeated runs differ slightly even with a fixed seed.

Images are handed to ANTs as arrays with their geometry converted from nibabel's affine (RAS) to ITK's
origin / spacing / direction (LPS), so nibabel and ITK can never disagree about a file's qform and sform.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mome.data.mni import authors_crop_affine, load_mni_crop, mni_crop_affine, mni_crop_shape
from mome.errors import ConfigError, InputError

_LPS = np.diag([-1.0, -1.0, 1.0])
MAX_SHEAR_MM = 0.5
REGISTRATION_MODES = ("auto", "always", "never")
INTERPOLATORS = {"nearest": "nearestNeighbor", "linear": "linear", "label": "genericLabel"}
#: mutual-information gain over the header placement that ends the registration attempts. Measured on the
#: four raw TCGA-FG-6692 scans (5.5 mm slices; distance from the truth = their rigid registration to the
#: T1, composed with the T1's registration): correct attempts gained 0.019-0.100 (T1 +0.100 at 0 mm, T1ce
#: +0.070 at 1.5 mm, T2 +0.028 at 5.9 mm, FLAIR +0.019 at 7.0 mm), wrong optima -0.012 to +0.004 (T1 at
#: 14.3 mm, T2 at 24.7 mm, FLAIR at 9.9 mm)
MIN_MI_GAIN = 0.012


@dataclass(frozen=True)
class RegistrationSettings:
    """antsRegistration parameters of both stages (antspyx defaults unless said otherwise).

    Attributes:
        iterations: iterations per resolution level (coarse to fine); a 0 skips that level.
        shrink_factors: downsampling factor per level.
        smoothing_sigmas: Gaussian smoothing per level (voxels).
        metric: ``mattes`` (mutual information; works across contrasts) or ``GC`` / ``meansquares``.
        sampling_rate: fraction of voxels sampled by the metric.
        mask_erosion_voxels: erosion of the template brain mask before it skull-strips the scan.
        rigid_refinements: extra rigid passes on the scan skull-stripped by the previous pass.
        final_transform: ``Affine`` (12 parameters, the paper's choice) or ``Similarity`` (rigid +
            isotropic scale; steadier on scans whose field of view cuts the brain).
        random_seed: seed of ANTs' metric sampling (recorded with the result).
        attempts: registrations tried at most. With random metric sampling a registration sometimes
            ends in a wrong optimum: on the real TCGA T1 in ``../shared/data`` 5 of 8 runs gave NCC 0.32 and
            3 gave 0.055-0.117, about the header placement (0.061). So when an attempt does not raise the
            template similarity by ``min_mi_gain`` over the header placement, the next one runs (attempt 2:
            the next seed; attempt 3 and later: full sampling, 4x slower), and the attempt with the highest
            similarity is kept. The similarity is mutual information (:func:`template_mi`), not NCC: the
            template is a T1, and a T2 registered correctly correlates *negatively* with it (TCGA T2: NCC
            -0.17 at 5.9 mm from the truth, -0.04 at 24.7 mm), so picking the highest NCC kept a wrong T2.
        min_mi_gain: mutual-information gain over the header placement that ends the attempts early.
    """

    iterations: tuple[int, ...] = (2100, 1200, 1200, 10)
    shrink_factors: tuple[int, ...] = (6, 4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (3, 2, 1, 0)
    metric: str = "mattes"
    sampling_rate: float = 0.2
    mask_erosion_voxels: int = 3
    rigid_refinements: int = 1
    final_transform: str = "Affine"
    random_seed: int = 0
    attempts: int = 3
    min_mi_gain: float = MIN_MI_GAIN

    def to_dict(self) -> dict:
        return asdict(self)


FAST = RegistrationSettings(iterations=(1000, 500, 250, 0))
"""Skips the full-resolution level (about 3x faster; for previews and tests)."""


def ants_image(array: np.ndarray, affine: np.ndarray):
    """An ``ants.ANTsImage`` holding ``array`` with nibabel's voxel-to-RAS ``affine`` (mm).

    Raises:
        InputError: when the affine is sheared by more than ``MAX_SHEAR_MM`` over the volume (ITK
            images have an orthonormal direction; resample such scans first).
    """
    import ants

    affine = np.asarray(affine, dtype=np.float64)
    m = affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    u, _, vt = np.linalg.svd(m / spacing)
    direction = u @ vt  # nearest orthonormal matrix
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in array.shape[:3]], indexing="ij")).reshape(3, -1)
    err = float(np.abs((m - direction * spacing) @ corners).max())
    if err > MAX_SHEAR_MM:
        raise InputError(f"the scan's affine is sheared ({err:.2f} mm over the volume); resample it onto a "
                         "non-sheared grid first (e.g. with nibabel.processing.resample_to_output)")
    return ants.from_numpy(np.ascontiguousarray(array, dtype=np.float32), origin=tuple(_LPS @ affine[:3, 3]),
                           spacing=tuple(spacing), direction=_LPS @ direction)


def ants_reference(shape: tuple[int, ...], affine: np.ndarray):
    """An empty ANTs image defining a target grid (shape, RAS affine)."""
    return ants_image(np.zeros(shape, dtype=np.float32), affine)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    # antspyx only exposes the seed through set_ants_deterministic(), which also forces ITK to one thread
    # for the whole process; setting the module variable it uses keeps multithreading.
    import ants.config as cfg

    old = getattr(cfg, "_random_seed", None)
    cfg._random_seed = seed
    try:
        yield
    finally:
        cfg._random_seed = old


def template_mi(array: np.ndarray, template: np.ndarray, brain: np.ndarray) -> float:
    """Mutual information (nats, ANTs' Mattes metric, every voxel sampled) of an array on the MNI crop with
    the template inside its brain mask: higher is more similar, whatever the scan's contrast."""
    import ants

    aff = mni_crop_affine(1.0)
    return -float(ants.image_similarity(ants_image(template, aff), ants_image(array, aff), "MattesMutualInformation",
                                        fixed_mask=ants_image(brain.astype(np.float32), aff)))


def masked_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised cross-correlation (Pearson r) of two images inside a mask; 0 for a constant image."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


@dataclass
class Registration:
    """A native -> MNI crop registration.

    Attributes:
        transform: ANTs affine ``.mat`` (apply it forward to bring native images onto the MNI crop).
        ncc_before: NCC with the template in its brain mask when the scan is placed by its header alone.
        ncc_after: the same after registration (negative for a correct T2: the template is a T1).
        mi_before, mi_after: mutual information with the template in its brain mask (:func:`template_mi`),
            header placement vs registered; what the attempts are chosen by.
        seconds: wall time of all registration stages and attempts.
        attempts: registrations run (see :attr:`RegistrationSettings.attempts`); 0 when skipped.
        skipped: why no registration ran (the known MNI grid the scan lies on), else None.
    """

    transform: Path
    ncc_before: float
    ncc_after: float
    seconds: float
    attempts: int = 1
    skipped: str | None = None
    mi_before: float | None = None
    mi_after: float | None = None


def _register(fixed, moving, kind: str, prefix: Path, s: RegistrationSettings, initial: str | None = None):
    import ants

    with _seeded(s.random_seed):
        return ants.registration(fixed, moving, type_of_transform=kind, initial_transform=initial,
                                 outprefix=str(prefix), aff_metric=s.metric, aff_random_sampling_rate=s.sampling_rate,
                                 aff_iterations=tuple(s.iterations), aff_shrink_factors=tuple(s.shrink_factors),
                                 aff_smoothing_sigmas=tuple(s.smoothing_sigmas), verbose=False)


#: voxel grids that are MNI152 space by construction: a scan on one of them was registered already.
#: name -> (shape, voxel-to-RAS affine); compared after reorientation to RAS voxel order.
KNOWN_MNI_GRIDS: dict[str, tuple[tuple[int, int, int], np.ndarray]] = {
    "FSL MNI152 1 mm (182x218x182)": ((182, 218, 182), np.array(
        [[1.0, 0, 0, -91], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])),
    "FSL MNI152 2 mm (91x109x91)": ((91, 109, 91), np.array(
        [[2.0, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])),
    "ICBM 2009 / nilearn MNI152 1 mm (197x233x189)": ((197, 233, 189), np.array(
        [[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])),
    "mome MNI crop (160x196x160)": (mni_crop_shape(1.0), mni_crop_affine(1.0)),
    "authors' MoME crop (160x196x160)": (mni_crop_shape(1.0), authors_crop_affine()),
}
MNI_GRID_ATOL_MM = 0.01
#: a scan on a known MNI grid is kept as it is only when its signal covers this fraction of the template
#: brain (guards against a file whose header was copied from an MNI image). The real ms_patient07 scans
#: in ../shared/data (FSL's MNI grid, skull-stripped, brain smaller than the template's) cover 0.59-0.60.
MIN_BRAIN_COVERAGE = 0.4


def known_mni_grid(shape: tuple[int, ...], affine: np.ndarray) -> str | None:
    """The name of the MNI152 grid a RAS-ordered scan lies on (:data:`KNOWN_MNI_GRIDS`), or None."""
    affine = np.asarray(affine, dtype=np.float64)
    for name, (grid_shape, grid_affine) in KNOWN_MNI_GRIDS.items():
        if tuple(int(n) for n in shape[:3]) == tuple(grid_shape) and \
                np.allclose(affine, grid_affine, atol=MNI_GRID_ATOL_MM):
            return name
    return None


def brain_coverage(array: np.ndarray, affine: np.ndarray) -> float:
    """Fraction of the template brain (on the MNI crop) where the scan, placed by its header, has signal.

    Signal: not zero, and above 5% of the scan's 99th percentile (background and skull stripping below).
    """
    import ants

    moving = ants_image(array, affine)
    fixed = ants_reference(mni_crop_shape(1.0), mni_crop_affine(1.0))
    placed = ants.resample_image_to_target(moving, fixed, interp_type="linear").numpy()
    brain = load_mni_crop("mask").astype(bool)
    return float(signal_mask(placed[brain], reference=array).mean())


def signal_mask(values: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Where a scan has signal: not zero and above 5% of the 99th percentile of ``reference``'s positive
    voxels (default ``values``'), so background and the zeros of skull stripping are left out."""
    ref = values if reference is None else reference
    positive = ref[ref > 0]
    level = 0.05 * float(np.percentile(positive, 99)) if positive.size else 0.0
    return (values > level) & (values != 0)


def identity_registration(array: np.ndarray, affine: np.ndarray, workdir: Path, grid: str) -> Registration:
    """The registration of a scan already in MNI space: an identity ANTs transform, nothing estimated."""
    import ants

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = workdir / "identity_0GenericAffine.mat"
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    matrix=np.eye(3), translation=np.zeros(3))
    ants.write_transform(tx, str(path))
    template = load_mni_crop("t1")
    brain = load_mni_crop("mask").astype(bool)
    placed = warp_to_mni(array, affine, path, "linear")
    ncc, mi = masked_ncc(placed, template, brain), template_mi(placed, template, brain)
    return Registration(path, ncc, ncc, time.perf_counter() - t0, attempts=0, skipped=grid, mi_before=mi, mi_after=mi)


def register_to_mni(array: np.ndarray, affine: np.ndarray, workdir: Path,
                    settings: RegistrationSettings = RegistrationSettings(), mode: str = "auto") -> Registration:
    """Register a native scan (array + RAS affine) to the MNI152 1 mm crop: rigid, masked affine.

    Args:
        array: the scan's voxels (3D).
        affine: its voxel-to-world affine (RAS, mm), as nibabel gives it.
        workdir: folder for ANTs' transform files (kept: ``rigid_0GenericAffine.mat``,
            ``affine_0GenericAffine.mat``; a retry writes into ``attempt<k>/``).
        settings: registration parameters.
        mode: ``auto`` (a scan on a known MNI152 grid, :func:`known_mni_grid`, whose signal covers the
            template brain is kept as it is: identity transform, no registration), ``always`` or
            ``never`` (identity transform whatever the grid: for scans the user registered).
    """
    if mode not in REGISTRATION_MODES:
        raise ConfigError(f"unknown registration mode {mode!r}; use one of {', '.join(REGISTRATION_MODES)}")
    if mode == "never":
        return identity_registration(array, affine, workdir, "given as registered (--registration never)")
    if mode == "auto":
        grid = known_mni_grid(array.shape, affine)
        coverage = None if grid is None else brain_coverage(array, affine)
        if coverage is not None and coverage >= MIN_BRAIN_COVERAGE:
            return identity_registration(array, affine, workdir,
                                         f"{grid}; its signal covers {coverage:.0%} of the template brain")
    if settings.attempts < 1:
        raise ConfigError(f"attempts must be >= 1, got {settings.attempts}")
    t0 = time.perf_counter()
    best = None
    for k in range(settings.attempts):
        tried = settings if k == 0 else replace(settings, random_seed=settings.random_seed + k,
                                                sampling_rate=settings.sampling_rate if k == 1 else 1.0)
        reg = _register_once(array, affine, workdir if k == 0 else workdir / f"attempt{k + 1}", tried)
        if best is None or reg.mi_after > best.mi_after:
            best = reg
        if reg.mi_after >= reg.mi_before + settings.min_mi_gain:
            break
    return replace(best, seconds=time.perf_counter() - t0, attempts=k + 1)


def _register_once(array: np.ndarray, affine: np.ndarray, workdir: Path,
                   settings: RegistrationSettings) -> Registration:
    import ants
    from scipy import ndimage

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    moving = ants_image(array, affine)
    crop_aff = mni_crop_affine(1.0)
    template = load_mni_crop("t1")
    brain = load_mni_crop("mask").astype(bool)
    fixed = ants_image(template, crop_aff)
    eroded = ants_image(ndimage.binary_erosion(brain, iterations=settings.mask_erosion_voxels).astype(np.float32),
                        crop_aff)

    def strip(transform: str):
        native_mask = ants.apply_transforms(moving, eroded, [transform], interpolator="nearestNeighbor",
                                            whichtoinvert=[True])
        return moving * native_mask

    rigid = _register(fixed, moving, "Rigid", workdir / "rigid_", settings)["fwdtransforms"][0]
    for i in range(settings.rigid_refinements):
        rigid = _register(fixed, strip(rigid), "Rigid", workdir / f"rigid{i + 2}_", settings, initial=rigid)[
            "fwdtransforms"][0]
    if settings.final_transform not in ("Affine", "Similarity"):
        raise ConfigError(f"final_transform {settings.final_transform!r}; expected 'Affine' or 'Similarity'")
    aff = _register(fixed, strip(rigid), settings.final_transform, workdir / "affine_", settings, initial=rigid)
    seconds = time.perf_counter() - t0
    transform = Path(aff["fwdtransforms"][0])
    after = warp_to_mni(array, affine, transform, "linear")
    before = ants.resample_image_to_target(moving, fixed, interp_type="linear").numpy()
    return Registration(transform, masked_ncc(before, template, brain), masked_ncc(after, template, brain), seconds,
                        mi_before=template_mi(before, template, brain), mi_after=template_mi(after, template, brain))


def warp_to_mni(array: np.ndarray, affine: np.ndarray, transform: Path, interpolation: str = "linear",
                spacing_mm: float = 1.0, grid: tuple[tuple[int, int, int], np.ndarray] | None = None) -> np.ndarray:
    """Resample a native-space array onto the MNI crop (or another MNI ``grid`` = (shape, affine))."""
    import ants

    shape, grid_affine = grid if grid is not None else (mni_crop_shape(spacing_mm), mni_crop_affine(spacing_mm))
    out = ants.apply_transforms(ants_reference(shape, grid_affine),
                                ants_image(array, affine), [str(transform)],
                                interpolator=INTERPOLATORS[interpolation])
    return out.numpy()


def warp_to_native(array: np.ndarray, transform: Path, shape: tuple[int, ...], affine: np.ndarray,
                   interpolation: str = "nearest", spacing_mm: float = 1.0,
                   grid_affine: np.ndarray | None = None) -> np.ndarray:
    """Resample an MNI-crop array (or one on another MNI grid's ``grid_affine``) onto a native grid."""
    import ants

    source = mni_crop_affine(spacing_mm) if grid_affine is None else grid_affine
    out = ants.apply_transforms(ants_reference(shape, affine), ants_image(array, source),
                                [str(transform)], interpolator=INTERPOLATORS[interpolation], whichtoinvert=[True])
    return out.numpy()


def mni_points_to_native(points_mm: np.ndarray, transform: Path) -> np.ndarray:
    """Map world points (N x 3, RAS mm) from MNI space to the native scan's world space."""
    import ants

    tx = ants.read_transform(str(transform))
    pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    out = [_LPS @ np.asarray(tx.apply_to_point(tuple(_LPS @ p))) for p in pts]
    return np.array(out).reshape(pts.shape)
