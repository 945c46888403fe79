"""``mome benchmark --seeds 0,1,2``: the benchmark once per training seed, and what holds across seeds.

Every seed is a complete benchmark run in ``OUT/seed-<s>`` (resumable, as one run is; a finished seed is
reused) on **one shared synthetic data set** (``OUT/data``, generated with the first seed), so that the seeds
differ only in training (weights, patch sampling, augmentation): the spread across seeds is the training's.
``OUT/seeds.md`` gives every table cell as mean +- sd over the seeds, and ``OUT/fidelity.md`` every claim of
the paper with its verdict per seed combined (:func:`mome.benchmark.fidelity.combine_seeds`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mome.errors import ConfigError


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError(f"--seeds takes integers separated by commas (e.g. 0,1,2), got {text!r}") from exc
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds needs two or more distinct non-negative seeds, got {text!r}")
    return seeds


def run_seeds(preset: str, out: str | os.PathLike, seeds: list[int], *, systems: list[str] | None = None,
              overwrite: bool = False, device: str = "auto", log: Callable[[str], None] = print,
              progress: bool = True) -> dict:
    """Run (or reuse) every seed's benchmark, then write the across-seed summary; returns it."""
    from mome.benchmark.runner import BENCHMARK_FILE, run_benchmark

    out = Path(out)
    per_seed = {}
    for seed in seeds:
        folder = out / f"seed-{seed}"
        marker = folder / BENCHMARK_FILE
        if marker.is_file() and json.loads(marker.read_text()).get("finished") and not overwrite:
            log(f"seed {seed}: finished run in {folder}, reused")
            per_seed[seed] = json.loads((folder / "results.json").read_text())
            continue
        log(f"seed {seed}: benchmark into {folder}")
        per_seed[seed] = run_benchmark(preset, folder, seed=seed, systems=systems, overwrite=overwrite,
                                       device=device, log=log, progress=progress, data=out / "data",
                                       data_seed=seeds[0])
    return write_seed_summary(out, per_seed, preset)


def cell_stats(per_seed: dict[int, dict]) -> dict:
    """``{table: [{labels, values: {system: {mean, sd, seeds}}}]}`` over the seeds' results.json tables."""
    first = per_seed[next(iter(per_seed))]["tables"]
    out = {}
    for name, table in first.items():
        rows = []
        for i, row in enumerate(table["rows"]):
            values = {}
            for system in table["systems"]:
                xs = [r["tables"][name]["rows"][i]["values"].get(system) for r in per_seed.values()
                      if name in r["tables"] and i < len(r["tables"][name]["rows"])]
                xs = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
                if xs:
                    values[system] = {"mean": float(np.mean(xs)), "sd": float(np.std(xs, ddof=1)) if len(xs) > 1
                                      else None, "seeds": len(xs)}
            rows.append({"labels": row["labels"], "values": values})
        out[name] = {"title": table["title"], "systems": table["systems"], "rows": rows}
    return out


def seed_wall_times(per_seed: dict[int, dict]) -> dict[int, float]:
    """Minutes per seed from each results.json's ``timings_s`` (seeds without timings left out)."""
    return {s: sum(r["timings_s"].values()) / 60 for s, r in sorted(per_seed.items()) if r.get("timings_s")}


def write_seed_summary(out: Path, per_seed: dict[int, dict], preset: str) -> dict:
    from mome.benchmark.fidelity import combine_seeds, fidelity_markdown
    from mome.benchmark.report import LABELS

    cells = cell_stats(per_seed)
    seeds = sorted(per_seed)
    md = [f"# mome benchmark ({preset}), seeds {', '.join(map(str, seeds))}", "",
          "Every cell: mean +- sd over the seeds (one shared synthetic data set; the seeds differ in training "
          "only). Per seed, each cell's 95% interval over test images is in `seed-<s>/report.md`.", ""]
    for table in cells.values():
        md += [f"**{table['title']}**", "",
               "| " + " | ".join(["row", *table["systems"]]) + " |", "|---|" + "---:|" * len(table["systems"])]
        for row in table["rows"]:
            cells_txt = []
            for s in table["systems"]:
                v = row["values"].get(s)
                cells_txt.append("-" if v is None else f"{v['mean']:.4f}" + (
                    "" if v["sd"] is None else f" +- {v['sd']:.4f}"))
            md.append("| " + " / ".join(x for x in row["labels"] if x) + " | " + " | ".join(cells_txt) + " |")
        md.append("")
    wall = seed_wall_times(per_seed)
    if wall:
        md += ["**Wall time per seed** (sum of the steps timed by the invocation that finished the seed: a resumed "
               "seed counts only its last part; the shared data are synthesised once, with the first seed)", "",
               "| seed | minutes |", "|---|---:|", *[f"| {s} | {m:.1f} |" for s, m in wall.items()], ""]
    (out / "seeds.md").write_text("\n".join(md) + "\n")
    claims = combine_seeds({s: r.get("fidelity") or [] for s, r in per_seed.items()})
    (out / "fidelity.md").write_text(fidelity_markdown(
        claims, LABELS, f"The paper's claims over seeds {', '.join(map(str, seeds))} ({preset} preset; synthetic "
                        "data)"))
    summary = {"seeds": seeds, "cells": cells, "fidelity": claims, "wall_minutes": wall}
    (out / "seeds.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary
