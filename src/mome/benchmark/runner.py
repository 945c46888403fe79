"""The benchmark pipeline: synthesise -> train every system -> predict -> evaluate -> tables and figures.

Every step is resumable: an interrupted benchmark started again with the same command reuses the data,
finished training runs (and resumes unfinished ones from their checkpoints) and existing predictions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from mome.benchmark.presets import BenchmarkPreset, get_benchmark_preset
from mome.errors import ConfigError, OutputExistsError
from mome.utils.atomic import check_location, check_writable

BENCHMARK_FILE = "benchmark.json"


def run_benchmark(preset: str | BenchmarkPreset, out: str | os.PathLike, *, seed: int = 0,
                  systems: list[str] | None = None, overwrite: bool = False, device: str = "auto",
                  log: Callable[[str], None] = print, progress: bool = True,
                  data: str | os.PathLike | None = None, data_seed: int | None = None) -> dict:
    """Run the whole benchmark into ``out`` and return the results dict (also ``out/results.json``).

    Args:
        preset: ``quick``, ``cpu``, ``paper`` or a :class:`BenchmarkPreset`.
        out: output folder (data/, runs/, predictions/, evaluation/, figures/, report.md, results.json).
        seed: seed of the synthetic data and of every training run.
        systems: restrict to these systems (default: the preset's systems and ablations).
        overwrite: start again in an ``out`` that holds a benchmark of other settings or a finished one.
        device: inference device.
        log: one-line status messages.
        progress: training progress bars.
        data: the synthetic data folder (default ``out/data``); several seeds share one (``mome.benchmark.seeds``).
        data_seed: seed of the synthetic data (default ``seed``).
    """
    from mome.training.systems import get_system
    from mome.utils.provenance import provenance

    bp = get_benchmark_preset(preset) if isinstance(preset, str) else preset
    chosen = list(dict.fromkeys(systems or [*bp.systems, *bp.ablations]))
    for name in chosen:
        get_system(name)  # unknown names fail before any work
    out = Path(out)
    data_seed = seed if data_seed is None else int(data_seed)
    data_dir = out / "data" if data is None else Path(data)
    settings = {"preset": bp.name, "seed": seed, "systems": chosen, "synth": bp.synth, "train": bp.train,
                "train_overrides": bp.train_overrides,  # the data's seed and folder only where they differ
                **({} if data_seed == seed else {"data_seed": data_seed}),
                **({} if data is None else {"data": str(data_dir)})}
    _prepare(out, settings, overwrite)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    collection = _data(data_dir, bp.synth, data_seed, log)
    timings["synthesise"] = time.perf_counter() - t0

    runs = out / "runs"
    overrides = {**bp.train_overrides, "seed": seed}
    needs = [n for n in chosen if get_system(n).needs_experts]
    if needs:
        t0 = time.perf_counter()
        _train("experts", collection, runs / "experts", bp, overrides, None, log, progress)
        timings["train experts"] = time.perf_counter() - t0
    for name in chosen:
        t0 = time.perf_counter()
        experts = runs / "experts" if get_system(name).needs_experts else None
        _train(name, collection, runs / name, bp, overrides, experts, log, progress)
        timings[f"train {name}"] = time.perf_counter() - t0

    results, skipped = {}, {}
    test = collection.filter(split="test").cases
    for name in chosen:
        t0 = time.perf_counter()
        results[name], skipped[name] = _predict_and_evaluate(name, runs / name, collection, test, out, bp,
                                                             device, log, seed)
        timings[f"predict+evaluate {name}"] = time.perf_counter() - t0

    from mome.benchmark.report import write_report

    t0 = time.perf_counter()
    report = write_report(out, bp, seed, chosen, results, skipped, collection, runs, timings, log)
    timings["tables+figures"] = time.perf_counter() - t0
    record = {**report, "timings_s": timings, "provenance": provenance(
        seed=seed, benchmark=settings,
        inference={"precision": bp.precision, "patch_size": bp.patch_size or "training patch, sliding"})}
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str))
    (out / BENCHMARK_FILE).write_text(json.dumps({**settings, "finished": True}, indent=2))
    log(f"benchmark finished in {sum(timings.values()):.0f} s: {out / 'report.md'}")
    return record


def _prepare(out: Path, settings: dict, overwrite: bool) -> None:
    import shutil

    marker = out / BENCHMARK_FILE
    if marker.exists():
        old = json.loads(marker.read_text())
        same = {k: old.get(k) for k in settings} == settings
        if old.get("finished") and not overwrite:
            raise OutputExistsError(f"{out} holds a finished benchmark; pass --overwrite to run it again")
        if not same and not overwrite:
            raise OutputExistsError(f"{out} holds a benchmark with other settings; pass --overwrite or another --out")
        if overwrite:
            shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not a benchmark folder; pass --overwrite or another --out")
    elif out.exists() and overwrite:
        check_writable(out, overwrite=True, kind="folder")  # never a folder mome did not write
        shutil.rmtree(out)
    else:
        check_location(out)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({**settings, "finished": False}, indent=2))


def _data(folder: Path, synth_preset: str, seed: int, log):
    from mome.data.collection import load_collection
    from mome.data.synth import generate_benchmark

    if (folder / "collection.json").exists():
        log(f"data: reusing {folder}")
        return load_collection(folder / "collection.json")
    log(f"data: synthesising preset {synth_preset!r} (seed {seed}) into {folder}")
    generate_benchmark(synth_preset, folder, seed=seed)
    return load_collection(folder / "collection.json")


def _train(name, collection, out, bp: BenchmarkPreset, overrides, experts, log, progress) -> None:
    from mome.training.stages import train_system
    from mome.training.systems import SystemOptions

    marker = Path(out) / "run.json"
    if marker.exists() and json.loads(marker.read_text()).get("finished"):
        log(f"{name}: finished run in {out}, reused")  # benchmark.json already pins the settings
        return
    options = SystemOptions(experts=str(experts)) if experts else SystemOptions()
    train_system(name, collection, out, preset=bp.train, overrides=overrides, options=options, log=log,
                 progress=progress)


def _predict_and_evaluate(name, run_dir, collection, test, out, bp, device, log, seed=0):
    from mome.benchmark.predict import SystemPredictor, predict_cases
    from mome.evaluation.evaluate import evaluate_predictions

    pred_dir = out / "predictions" / name
    log(f"{name}: predicting {len(test)} test images into {pred_dir}")
    skipped = predict_cases(SystemPredictor(run_dir, precision=bp.precision, device=device,
                                            patch_size=bp.patch_size, seed=seed), test, pred_dir)
    if skipped:
        log(f"{name}: not applicable to {len(skipped)} test image(s) (e.g. unseen datasets); reported as '-'")
    result = evaluate_predictions(pred_dir, collection, split="test", out_dir=out / "evaluation" / name,
                                  overwrite=True, allow_missing=bool(skipped), name=name)
    return result, skipped


def check_systems(names: list[str]) -> None:
    """Raise ConfigError for unknown system names (CLI validation)."""
    from mome.training.systems import SYSTEMS

    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ConfigError(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")


__all__ = ["run_benchmark", "check_systems"]
