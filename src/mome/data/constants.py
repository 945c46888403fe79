"""Names shared by data, training and evaluation: modalities, lesion types and their groups."""

from __future__ import annotations

from mome.errors import DataError

MODALITIES = ("T1", "T2", "T1ce", "FLAIR", "DWI")

# lesion types of cases, and the paper's lesion-level groups (Supplementary Table I)
LESION_TYPES = ("tumour", "wmh", "ms", "stroke_acute", "stroke_chronic", "none")
LESION_GROUPS = {
    "tumour": "Tumour",
    "wmh": "WMH",
    "ms": "WMH",
    "stroke_acute": "Stroke",
    "stroke_chronic": "Stroke",
    "none": "None",
}

_ALIASES = {
    "t1": "T1", "t1w": "T1", "t1-weighted": "T1", "mprage": "T1",
    "t2": "T2", "t2w": "T2", "t2-weighted": "T2",
    "t1ce": "T1ce", "t1c": "T1ce", "t1gd": "T1ce", "t1-ce": "T1ce", "t1post": "T1ce", "t1_ce": "T1ce",
    "flair": "FLAIR", "t2-flair": "FLAIR", "t2flair": "FLAIR", "t2_flair": "FLAIR",
    "dwi": "DWI", "adc": None, "trace": "DWI", "b1000": "DWI",
}


def canonical_modality(name: str, *, context: str = "") -> str:
    """Map a modality name (any case, common aliases) to one of :data:`MODALITIES`.

    Raises:
        DataError: for names that are not one of the five modalities (ADC is refused on purpose:
            MoME's diffusion expert was trained on DWI trace images).
    """
    key = str(name).strip().lower()
    canon = _ALIASES.get(key, "missing")
    if canon == "missing" or canon is None:
        where = f" ({context})" if context else ""
        raise DataError(f"unknown modality {name!r}{where}; expected one of {', '.join(MODALITIES)}")
    return canon
