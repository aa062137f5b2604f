"""What bf16 costs in quality: the per-step medians of two sweeps of the same cells, fp32 against bf16.

    python bench/bench_precision.py RUN_FP32 RUN_BF16 [--out results/bench]

Both run folders must hold the same cells (model, images, masks, seeds, steps, resampling), e.g.

    aaas-profile sweep --model faces --steps 10,20,25,50 --dtype fp32 --device cpu --out results/faces-fp32
    aaas-profile sweep --model faces --steps 10,20,25,50 --dtype bf16 --device cpu --out results/faces-bf16

For every metric and step count it reports the fp32 median, the bf16 median, their difference, and the
metric's own spread there: the standard deviation of the fp32 values over the cells (image × mask × seed), the
image-to-image variation any curve drawn from these cells carries anyway. bf16 passes a (metric, step count)
when it moves the median by at most a tenth of that spread; ``precision.choose`` keeps ``auto`` at fp32 for a
model where it does not (the card's ``auto_dtype``). Also reported: the median over cells of the paired
absolute difference, cell by cell, in the same units.

Writes ``<out>/precision-<model>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from aaas_profile import runs

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.1  # a tenth of the image-to-image spread (docs/precision.md)


def compare(fp32: pd.DataFrame, bf16: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, metric, steps): medians, their difference, the spread and the ratio of the two."""
    key = [*runs.CELL_KEY, "metric"]
    merged = fp32.merge(bf16, on=key, suffixes=("_fp32", "_bf16"), validate="one_to_one")
    if len(merged) != len(fp32) or len(merged) != len(bf16):
        raise SystemExit(f"the run folders hold different cells ({len(fp32)} and {len(bf16)} rows, "
                         f"{len(merged)} shared); sweep the same cells in both")
    rows = []
    for (model, metric, steps), part in merged.groupby(["model", "metric", "steps"], sort=True):
        a, b = part["value_fp32"], part["value_bf16"]
        spread = float(a.std(ddof=1))
        shift = float(b.median() - a.median())
        rows.append({
            "model": model, "metric": metric, "steps": int(steps), "cells": len(part),
            "median_fp32": float(a.median()), "median_bf16": float(b.median()), "median_shift": shift,
            "spread_sd": spread, "shift_over_spread": abs(shift) / spread if spread > 0 else float("inf"),
            "paired_median_abs_diff": float((b - a).abs().median()),
        })
    table = pd.DataFrame(rows)
    table["passes"] = table["shift_over_spread"] <= THRESHOLD
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fp32", type=Path)
    parser.add_argument("bf16", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    fp32, bf16 = runs.read_scores(args.fp32), runs.read_scores(args.bf16)
    for name, table, want in (("first", fp32, "fp32"), ("second", bf16, "bf16")):
        if set(table["dtype"]) != {want}:
            raise SystemExit(f"the {name} run folder holds dtype {sorted(set(table['dtype']))}, expected {want}")
    table = compare(fp32, bf16)
    manifest = runs.Manifest(args.bf16 / "manifest.json").read()
    report = {"fp32_run": str(args.fp32), "bf16_run": str(args.bf16), "threshold": THRESHOLD,
              "cpu": manifest.get("cpu"), "bf16_passes": bool(table["passes"].all()),
              "rows": table.to_dict(orient="records")}
    args.out.mkdir(parents=True, exist_ok=True)
    models = "-".join(sorted(set(table["model"])))
    path = args.out / f"precision-{models}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':<8}{'metric':<9}{'steps':>6}{'cells':>6}{'fp32':>10}{'bf16':>10}{'Δ median':>11}{'sd':>10}"
          f"{'|Δ|/sd':>8}{'paired |Δ|':>12}  ok")
    for r in table.to_dict(orient="records"):
        print(f"{r['model']:<8}{r['metric']:<9}{r['steps']:>6}{r['cells']:>6}{r['median_fp32']:>10.4f}"
              f"{r['median_bf16']:>10.4f}{r['median_shift']:>11.2e}{r['spread_sd']:>10.4f}"
              f"{r['shift_over_spread']:>8.3f}{r['paired_median_abs_diff']:>12.2e}  {'yes' if r['passes'] else 'NO'}")
    worst = table.loc[table["shift_over_spread"].idxmax()]
    print(f"largest shift: {worst['metric']} at {worst['steps']} steps, {worst['shift_over_spread']:.3f} of the "
          f"spread (threshold {THRESHOLD}); bf16 {'passes' if report['bf16_passes'] else 'does NOT pass'}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
