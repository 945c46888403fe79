"""The paper's claims checked against finished benchmark runs (one seed, or several): a Markdown table.

    python benchmarks/fidelity.py bench_cpu --out docs/fidelity.md                 # one run
    python benchmarks/fidelity.py bench_seeds/seed-0 bench_seeds/seed-1 bench_seeds/seed-2 --out docs/fidelity.md

Reads each run's per-image evaluations (``RUN/evaluation/<system>/evaluation.json``) and its seed
(``RUN/benchmark.json``), tests every claim of mome.benchmark.fidelity, and (several runs) combines the seeds.
``mome benchmark`` writes the same table for its own run as ``fidelity.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from mome.benchmark.fidelity import check_claims, combine_seeds, fidelity_markdown
    from mome.benchmark.report import LABELS
    from mome.evaluation.result import load_evaluation

    per_seed, presets = {}, set()
    for run in args.runs:
        meta = json.loads((run / "benchmark.json").read_text()) if (run / "benchmark.json").is_file() else {}
        seed = int(meta.get("seed", 0))
        presets.add(meta.get("preset", "?"))
        results = {p.parent.name: load_evaluation(p, p.parent.name)
                   for p in sorted((run / "evaluation").glob("*/evaluation.json"))}
        per_seed[seed] = check_claims(results, seed)
        print(f"{run}: seed {seed}, systems {', '.join(results)}: {len(per_seed[seed])} claims testable")
    rows = per_seed[next(iter(per_seed))] if len(per_seed) == 1 else combine_seeds(per_seed)
    title = (f"The paper's claims on mome's synthetic benchmark ({', '.join(sorted(presets))} preset, "
             f"seed{'s' if len(per_seed) > 1 else ''} {', '.join(map(str, sorted(per_seed)))})")
    text = fidelity_markdown(rows, LABELS, title)
    text += ("\nRegenerate: `python benchmarks/fidelity.py " + " ".join(str(r) for r in args.runs)
             + (f" --out {args.out}" if args.out else "") + "`.\n")
    print(text)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
