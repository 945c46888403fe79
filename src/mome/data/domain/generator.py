"""One domain-randomised training volume: real anatomy, real lesion shape, random contrast and scanner.

Per sample (all draws from one ``numpy.random.Generator``, so a sample is reproducible from its seed):

1. anatomy: one of the real label maps on the MNI box (:mod:`.label_maps`), randomly rotated, scaled and
   shifted together with the lesion (MONAI ``RandAffine``, nearest);
2. lesion: per modality a lesion type the modality shows (:data:`TASKS`): a real MS or stroke mask
   (:mod:`.lesion_bank`), or a glioma grown from thresholded smooth noise (oedema, enhancing rim,
   necrotic core), kept inside brain tissue; about 30% of samples have no lesion;
3. intensities: per label a Gaussian whose mean comes from the modality's tissue prior
   (:data:`TISSUE_PRIORS`) with a wide random perturbation (or, for 15% of samples, fully random), and
   the lesion's contrast to its host drawn within what the modality shows (:data:`LESION_CONTRAST`),
   blended with a soft edge (partial volume); a labelled lesion compartment whose contrast has one sign
   is moved at least :data:`MIN_MARGIN` beyond every normal tissue of the sample (brighter than the
   brightest, darker than the darkest non-CSF tissue), so that no label sits on a look-alike of grey
   matter (the first two candidates, trained without this rule, called cortex and deep grey matter
   lesion on real scans);
4. scanner: blur, one thick-slice axis (1-4x the voxel size, then back), bias field, gamma and noise
   (MONAI transforms), and an imperfect skull strip (the brain mask dilated or eroded by a voxel);
5. z-score inside the brain mask, as :func:`mome.training.data.prepare_case` does for files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mome.data.collection import Case
from mome.data.domain import P_NO_LESION, P_RANDOM_CONTRAST
from mome.data.domain.label_maps import TISSUE_GROUPS
from mome.data.domain.lesion_bank import LesionBank

#: mean intensity (0..1) of each tissue group per modality, from typical clinical contrasts
TISSUE_PRIORS = {
    "T1": {"wm": 0.80, "cortex": 0.50, "deep_gm": 0.62, "limbic": 0.50, "cerebellum_gm": 0.52, "csf": 0.12},
    "T1ce": {"wm": 0.78, "cortex": 0.50, "deep_gm": 0.60, "limbic": 0.50, "cerebellum_gm": 0.52, "csf": 0.12},
    "T2": {"wm": 0.30, "cortex": 0.50, "deep_gm": 0.42, "limbic": 0.55, "cerebellum_gm": 0.50, "csf": 0.95},
    "FLAIR": {"wm": 0.40, "cortex": 0.55, "deep_gm": 0.48, "limbic": 0.58, "cerebellum_gm": 0.50, "csf": 0.08},
    "DWI": {"wm": 0.45, "cortex": 0.55, "deep_gm": 0.50, "limbic": 0.55, "cerebellum_gm": 0.55, "csf": 0.10},
}
#: lesion types each modality is trained on (the paper's datasets: BraTS, ISLES, WMH, MSSEG, ATLAS)
TASKS = {
    "T1": ("tumour", "stroke_chronic"),
    "T1ce": ("tumour",),
    "T2": ("tumour", "ms"),
    "FLAIR": ("tumour", "ms", "stroke_acute"),
    "DWI": ("stroke_acute",),
}
#: lesion intensity minus host intensity (range of a uniform draw) per modality and lesion compartment;
#: every compartment a modality's label covers has a one-signed range, so the margin rule keeps it visible
#: (T1's labelled tumour core: the non-enhancing part is hypointense on a plain T1)
LESION_CONTRAST = {
    "T1": {"ms": (-0.30, -0.10), "stroke_acute": (-0.30, -0.10), "stroke_chronic": (-0.65, -0.35),
           "oedema": (-0.25, -0.08), "rim": (-0.30, -0.10), "necrosis": (-0.45, -0.25)},
    "T1ce": {"ms": (-0.20, -0.05), "stroke_acute": (-0.25, -0.05), "stroke_chronic": (-0.6, -0.3),
             "oedema": (-0.25, -0.05), "rim": (0.25, 0.55), "necrosis": (-0.45, -0.25)},
    "T2": {"ms": (0.25, 0.50), "stroke_acute": (0.25, 0.50), "stroke_chronic": (0.4, 0.6),
           "oedema": (0.30, 0.55), "rim": (0.15, 0.40), "necrosis": (0.40, 0.60)},
    "FLAIR": {"ms": (0.25, 0.55), "stroke_acute": (0.20, 0.45), "stroke_chronic": (-0.30, -0.10),
              "oedema": (0.30, 0.55), "rim": (0.15, 0.45), "necrosis": (-0.10, 0.30)},
    "DWI": {"ms": (0.0, 0.15), "stroke_acute": (0.35, 0.70), "stroke_chronic": (-0.2, 0.0),
            "oedema": (0.0, 0.15), "rim": (0.05, 0.25), "necrosis": (-0.3, -0.1)},
}
#: smallest distance of a labelled one-signed lesion compartment from every normal non-CSF tissue mean
MIN_MARGIN = 0.08
#: the tissue classes of ``PreparedCase.tissue`` (class i + 1; 0 = unknown: outside the brain mask, lesion,
#: unlisted labels), for the auxiliary tissue loss (``TrainConfig.tissue_weight``)
TISSUE_CLASSES = tuple(TISSUE_GROUPS)


@dataclass
class GeneratorConfig:
    """Ranges of the random draws (defaults follow SynthSeg / SynthStroke's spirit at mome's scale)."""

    p_no_lesion: float = P_NO_LESION
    p_random_contrast: float = P_RANDOM_CONTRAST
    rotate_rad: float = 0.15
    scale: float = 0.12
    shift_voxels: float = 4.0
    prior_jitter: float = 0.10
    label_std: tuple[float, float] = (0.01, 0.06)
    blur_sigma: tuple[float, float] = (0.0, 0.8)
    slice_factor: tuple[float, float] = (1.0, 4.0)
    bias_coeff: tuple[float, float] = (0.0, 0.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: tuple[float, float] = (0.0, 0.04)


def _affine_deform(labels: np.ndarray, lesion: np.ndarray, rng: np.random.Generator, cfg: GeneratorConfig):
    """Joint random rotation / scaling / shift of anatomy and lesion (MONAI ``RandAffine``, nearest)."""
    from monai.transforms import RandAffine

    t = RandAffine(prob=1.0, rotate_range=(cfg.rotate_rad,) * 3, scale_range=(cfg.scale,) * 3,
                   translate_range=(cfg.shift_voxels,) * 3, mode="nearest", padding_mode="zeros")
    t.set_random_state(seed=int(rng.integers(2**31 - 1)))
    t.randomize(None)
    lab = t(labels[None].astype(np.float32), randomize=False)
    les = t(lesion[None].astype(np.float32), randomize=False)
    return np.rint(np.asarray(lab[0])).astype(np.int32), np.asarray(les[0]) > 0.5


def _glioma(brain: np.ndarray, wm: np.ndarray, rng: np.random.Generator, spacing_mm: float):
    """Whole tumour, enhancing rim and necrosis masks grown from thresholded smooth noise around a WM voxel.

    Hand-written: no library draws tumour compartments; the shapes are irregular by construction.
    """
    from scipy import ndimage

    candidates = np.argwhere(wm)
    centre = candidates[int(rng.integers(len(candidates)))]
    radius = rng.uniform(8, 28) / spacing_mm
    grid = np.indices(brain.shape).astype(np.float32)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) / radius
    noise = ndimage.gaussian_filter(rng.standard_normal(brain.shape).astype(np.float32), rng.uniform(2, 4) / spacing_mm)
    field = dist - 0.6 * noise / (noise.std() + 1e-6) * rng.uniform(0.2, 0.5)
    whole = (field < 1.0) & brain
    core = (field < rng.uniform(0.4, 0.7)) & whole
    necrosis = (field < rng.uniform(0.1, 0.35)) & core
    return whole, core & ~necrosis, necrosis


def _scanner(image: np.ndarray, rng: np.random.Generator, cfg: GeneratorConfig) -> np.ndarray:
    """Blur, one thick-slice axis, bias field, gamma and noise (MONAI where it has the transform)."""
    from monai.transforms import RandBiasField, RandGaussianNoise
    from scipy import ndimage

    sigma = rng.uniform(*cfg.blur_sigma)
    if sigma > 0.05:
        image = ndimage.gaussian_filter(image, sigma)
    factor = rng.uniform(*cfg.slice_factor)
    if factor > 1.2:  # thick slices along one axis (MONAI's RandSimulateLowResolution is isotropic only)
        axis = int(rng.integers(3))
        zoom = [1.0, 1.0, 1.0]
        zoom[axis] = 1.0 / factor
        low = ndimage.zoom(image, zoom, order=1)
        image = ndimage.zoom(low, [n / m for n, m in zip(image.shape, low.shape)], order=1)
    bias = RandBiasField(coeff_range=cfg.bias_coeff, prob=1.0)
    bias.set_random_state(seed=int(rng.integers(2**31 - 1)))
    image = np.asarray(bias(image[None].astype(np.float32)))[0]
    image = np.clip(image, 0, None) ** rng.uniform(*cfg.gamma)
    noise = RandGaussianNoise(prob=1.0, std=rng.uniform(*cfg.noise_std))
    noise.set_random_state(seed=int(rng.integers(2**31 - 1)))
    return np.asarray(noise(image[None].astype(np.float32)))[0]


class DomainGenerator:
    """Draws training volumes (:class:`~mome.training.data.PreparedCase`) from label maps and lesion masks.

    Args:
        label_maps: label arrays on mome's MNI box at ``spacing_mm`` (:func:`.label_maps.load_label_maps`).
        lesions: the lesion bank on the same box.
        modalities: modalities to draw (uniformly).
        spacing_mm: the box spacing (for physical sizes).
        config: ranges of the random draws.
    """

    def __init__(self, label_maps: list[np.ndarray], lesions: LesionBank, modalities=tuple(TISSUE_PRIORS),
                 spacing_mm: float = 2.0, config: GeneratorConfig | None = None):
        if not label_maps:
            raise ValueError("no label maps")
        self.label_maps = label_maps
        self.lesions = lesions
        self.modalities = list(modalities)
        self.spacing_mm = float(spacing_mm)
        self.config = config or GeneratorConfig()
        groups = {lab: g for g, labs in TISSUE_GROUPS.items() for lab in labs}
        self._groups = groups
        # label -> tissue class (0 for labels outside TISSUE_GROUPS): one lookup per sample
        top = max(int(m.max()) for m in label_maps) + 1
        self._tissue_lut = np.zeros(top, np.int8)
        for index, group in enumerate(TISSUE_CLASSES, start=1):
            self._tissue_lut[[lab for lab in TISSUE_GROUPS[group] if lab < top]] = index

    def sample(self, rng: np.random.Generator, modality: str | None = None):
        """One volume: ``PreparedCase`` (z-scored image, label -1/0/1, foreground voxels)."""
        from mome.data.intensity import zscore_in_brain
        from mome.training.data import PreparedCase, foreground_voxels

        cfg = self.config
        modality = modality or self.modalities[int(rng.integers(len(self.modalities)))]
        labels = self.label_maps[int(rng.integers(len(self.label_maps)))]
        available = {"tumour", *self.lesions.types()}
        if "stroke_acute" in available:
            available.add("stroke_chronic")  # the same shapes, as cavities
        kinds = [k for k in TASKS[modality] if k in available]
        kind = "none" if rng.random() < cfg.p_no_lesion or not kinds else kinds[int(rng.integers(len(kinds)))]
        source = {"stroke_chronic": "stroke_acute"}.get(kind, kind)
        lesion = self.lesions.paste(source, rng) if source in self.lesions.types() else np.zeros(labels.shape, bool)
        labels, lesion = _affine_deform(labels, lesion, rng, cfg)
        brain = (labels > 0) & (labels < 500)
        tissue = brain & ~np.isin(labels, TISSUE_GROUPS["csf"])
        wm = np.isin(labels, TISSUE_GROUPS["wm"])
        compartments = {}
        if kind == "tumour":
            whole, rim, necrosis = _glioma(brain, wm & tissue, rng, self.spacing_mm)
            compartments = {"oedema": whole & ~rim & ~necrosis, "rim": rim, "necrosis": necrosis}
            lesion = (rim | necrosis) if modality in ("T1ce", "T1") else whole
        elif kind != "none":
            lesion &= tissue
            compartments = {kind: lesion}
        image, means = self._intensities(labels, modality, rng)
        tissue_means = [m for lab, m in means.items() if self._groups.get(lab) not in (None, "csf")]
        labelled = {name for name, m in compartments.items() if np.any(m & lesion)}
        image = self._add_lesion(image, compartments, modality, rng, labelled, tissue_means)
        image = _scanner(image, rng, cfg)
        mask = self._imperfect_strip(brain, rng)  # a dilated mask keeps some extra-cerebral tissue
        image = zscore_in_brain(image * mask, mask)
        seg = np.where(mask, 0, -1).astype(np.int8)
        seg[lesion & mask] = 1
        if kind != "none" and not np.any(seg == 1):
            kind = "none"
        case = Case(id=f"domain-{modality}-{kind}", image=Path("generated"), label=None, modality=modality,
                    dataset=f"domain_{kind}", lesion_type=kind)
        tissue_map = self._tissue_lut[labels]  # nearest-neighbour deformation keeps the map's own labels
        altered = seg != 0  # outside the mask, the labelled lesion, and every compartment that changed tissue
        for compartment in compartments.values():  # (a T1 glioma's oedema is not labelled but not normal either)
            altered |= compartment
        tissue_map[altered] = 0
        return PreparedCase(case, image.astype(np.float32), seg, foreground_voxels(seg, case.id), tissue_map)

    def _intensities(self, labels: np.ndarray, modality: str, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        prior = TISSUE_PRIORS[modality]
        random_contrast = rng.random() < cfg.p_random_contrast
        out = np.zeros(labels.shape, np.float32)
        means: dict[int, float] = {}
        noise = rng.standard_normal(labels.shape).astype(np.float32)
        for lab in np.unique(labels):
            if lab == 0:
                continue
            group = self._groups.get(int(lab))
            if random_contrast or group is None:
                mean = rng.uniform(0.05, 1.0)
            else:
                mean = float(np.clip(prior[group] + rng.normal(0, cfg.prior_jitter), 0.02, 1.0))
            sel = labels == lab
            means[int(lab)] = mean
            out[sel] = mean + rng.uniform(*cfg.label_std) * noise[sel]
        return out, means

    def _add_lesion(self, image: np.ndarray, compartments: dict, modality: str, rng: np.random.Generator,
                    labelled: set | frozenset = frozenset(), tissue_means=()):
        """Blend each compartment in with a soft edge: host texture + the modality's contrast.

        A ``labelled`` compartment whose contrast range has one sign is pushed at least :data:`MIN_MARGIN`
        beyond the extreme of ``tissue_means`` in that direction (it keeps its host-relative draw when that
        is already further out).
        """
        from scipy import ndimage

        for name, mask in compartments.items():
            if not mask.any():
                continue
            lo, hi = LESION_CONTRAST[modality][name]
            delta = rng.uniform(lo, hi)
            alpha = np.clip(ndimage.gaussian_filter(mask.astype(np.float32), rng.uniform(0.3, 1.0)), 0, 1)
            alpha = np.maximum(alpha, mask)
            texture = rng.uniform(0.0, 0.05) * rng.standard_normal(image.shape).astype(np.float32)
            shift = np.full(image.shape, delta, np.float32)
            if name in labelled and len(tissue_means) and lo * hi > 0:
                margin = MIN_MARGIN + abs(delta) * rng.uniform(0.0, 0.5)
                if lo > 0:  # at least margin above the brightest normal tissue
                    floor = max(tissue_means) + margin
                    shift = np.maximum(shift, floor - image)
                else:  # at least margin below the darkest normal tissue
                    ceiling = min(tissue_means) - margin
                    shift = np.minimum(shift, ceiling - image)
            image = image + alpha * (shift + texture)
        return np.clip(image, 0, None)

    @staticmethod
    def _imperfect_strip(brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy import ndimage

        step = int(rng.integers(-1, 2))
        if step > 0:
            return ndimage.binary_dilation(brain, iterations=step)
        if step < 0:
            return ndimage.binary_erosion(brain, iterations=-step)
        return brain
