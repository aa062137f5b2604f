"""Sweep and scoring throughput, each as a ratio against a baseline measured in the same run.

    python bench/bench_sweep.py [--model NAME_OR_FOLDER] [--images 4] [--steps 10,20] [--out results/bench]

Sweep: the same cells (images × mask, one seed) at each step count, RePaint 10/10, fp32, run four ways:

1. ``naive``: diffusers' own ``RePaintPipeline``, one image at a time (the baseline);
2. ``project-b1``: the project's sampler, one image at a time (same outputs as naive, checked);
3. ``project-batched``: all cells of a step count in one batch;
4. ``project-mixed``: every (cell, step count) item in one batch, step counts sharing UNet calls.

Reported: seconds, UNet image-forwards/s, images/s, speed-up over naive, the largest output difference to
the naive outputs, and achieved FLOP/s against this device's measured peak (a large fp32 matrix product), with
the UNet's FLOPs per image-forward counted by ``torch.utils.flop_counter``.

Scoring: all six metrics on the outputs, batched against one image at a time.

Writes ``<out>/sweep.json`` and prints a table. The default model is the bundled ``faces`` (what a CPU user
sweeps); ``--model random64`` builds a larger 64-px UNet with random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from aaas_profile import images as images_mod
from aaas_profile import metrics
from aaas_profile.inpaint import RePaintConfig, inpaint, unet_calls
from aaas_profile.masks import MaskSpec, mask_seed
from aaas_profile.models import DEFAULT_SCHEDULE, load

ROOT = Path(__file__).resolve().parents[1]


def bench_unet():
    """A 64-px DDPM UNet of a realistic shape for CPU work (about 9 M parameters)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=64, in_channels=3, out_channels=3, layers_per_block=2,
                       block_out_channels=(64, 128, 128, 256),
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")).eval()


def flops_per_forward(unet, resolution: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, resolution, resolution)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, 500)
    return float(counter.get_total_flops())


def peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matrix-product rate of this device (FLOP/s), median of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="faces", help="model name or folder; 'random64' builds a 9 M-parameter "
                        "64-px UNet with random weights")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", default="10,20")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    if args.model != "random64":
        loaded = load(args.model)
        unet, schedule, resolution, model_name = loaded.unet, loaded.scheduler_config, loaded.resolution, loaded.name
    else:
        unet, schedule, resolution, model_name = bench_unet(), DEFAULT_SCHEDULE, 64, "bench64 (random weights)"
    unet.requires_grad_(False)
    steps_grid = [int(s) for s in args.steps.split(",")]
    config = RePaintConfig()  # RePaint's 10/10
    pictures = images_mod.load_folder(ROOT / "datasets" / "sample", resolution, limit=args.images)
    originals = torch.stack([p.tensor for p in pictures])
    spec = MaskSpec("thick", "thick")
    masks = torch.stack([spec.make(resolution, mask_seed("mask", "thick", p.image_id, 0)) for p in pictures])
    seeds = [mask_seed("noise", "thick", p.image_id, 0) for p in pictures]
    n = len(pictures)

    from diffusers import RePaintPipeline, RePaintScheduler

    pipe = RePaintPipeline(unet=unet, scheduler=RePaintScheduler(**{k: v for k, v in schedule.items()
                                                                     if k != "trained_betas"}))
    pipe.set_progress_bar_config(disable=True)

    def naive():
        outs = {}
        for steps in steps_grid:
            for i in range(n):
                result = pipe(image=originals[i:i + 1] * 2 - 1, mask_image=masks[i:i + 1], num_inference_steps=steps,
                              eta=0.0, jump_length=config.jump_length, jump_n_sample=config.jump_n_sample,
                              generator=torch.Generator().manual_seed(seeds[i]), output_type="np")
                outs[(steps, i)] = torch.from_numpy(result.images[0]).permute(2, 0, 1)
        return outs

    def project_b1():
        return {(steps, i): inpaint(unet, schedule, originals[i:i + 1], masks[i:i + 1], [seeds[i]], steps,
                                    config).images[0] for steps in steps_grid for i in range(n)}

    def project_batched():
        outs = {}
        for steps in steps_grid:
            images = inpaint(unet, schedule, originals, masks, seeds, steps, config).images
            outs.update({(steps, i): images[i] for i in range(n)})
        return outs

    def project_mixed():
        items = [(steps, i) for steps in steps_grid for i in range(n)]
        idx = [i for _, i in items]
        images = inpaint(unet, schedule, originals[idx], masks[idx], [seeds[i] for i in idx],
                         [s for s, _ in items], config).images
        return {item: images[k] for k, item in enumerate(items)}

    calls = {s: unet_calls(s, config, schedule) for s in steps_grid}
    forwards = n * sum(calls.values())
    flops = flops_per_forward(unet, resolution)
    peak = peak_flops()

    rows, reference = [], None
    for name, fn in (("naive", naive), ("project-b1", project_b1), ("project-batched", project_batched),
                     ("project-mixed", project_mixed)):
        outs, seconds = timed(fn)
        print(f"  {name}: {seconds:.1f} s", flush=True)
        if reference is None:
            reference, baseline = outs, seconds
        diff = max(float((outs[k] - reference[k]).abs().max()) for k in reference)
        rows.append({"variant": name, "seconds": seconds, "unet_forwards_per_s": forwards / seconds,
                     "images_per_s": len(reference) / seconds, "speedup_vs_naive": baseline / seconds,
                     "max_abs_diff_vs_naive": diff, "achieved_gflops": flops * forwards / seconds / 1e9,
                     "percent_of_peak": 100 * flops * forwards / seconds / peak})

    outputs = torch.stack([reference[k] for k in sorted(reference)])
    refs = torch.stack([originals[i] for _, i in sorted(reference)])
    _, one_by_one = timed(lambda: [metrics.score(outputs[i:i + 1], refs[i:i + 1]) for i in range(len(outputs))])
    _, batched = timed(lambda: metrics.score(outputs, refs))
    scoring = {"images": len(outputs), "one_at_a_time_images_per_s": len(outputs) / one_by_one,
               "batched_images_per_s": len(outputs) / batched, "speedup": one_by_one / batched}

    report = {"model": model_name, "resolution": resolution, "images": n, "steps": steps_grid,
              "unet_calls_per_image": calls, "unet_forwards": forwards, "gflop_per_forward": flops / 1e9,
              "device": "cpu", "device_name": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "measured_peak_gflops_fp32": peak / 1e9,
              "torch": torch.__version__, "sweep": rows, "scoring": scoring,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"sweep bench · {model_name}, {resolution} px, {n} images × steps {steps_grid} (RePaint 10/10), "
          f"{forwards} UNet image-forwards, {flops / 1e9:.2f} GFLOP each, CPU peak {peak / 1e9:.0f} GFLOP/s, "
          f"{torch.get_num_threads()} threads")
    print(f"{'variant':<17}{'s':>8}{'fwd/s':>9}{'img/s':>8}{'× naive':>9}{'max|Δ|':>10}{'GFLOP/s':>9}{'% peak':>8}")
    for r in rows:
        print(f"{r['variant']:<17}{r['seconds']:>8.2f}{r['unet_forwards_per_s']:>9.1f}{r['images_per_s']:>8.2f}"
              f"{r['speedup_vs_naive']:>9.2f}{r['max_abs_diff_vs_naive']:>10.2e}{r['achieved_gflops']:>9.1f}"
              f"{r['percent_of_peak']:>8.1f}")
    print(f"scoring, six metrics, {scoring['images']} images: one at a time {scoring['one_at_a_time_images_per_s']:.1f}"
          f" img/s, batched {scoring['batched_images_per_s']:.1f} img/s (× {scoring['speedup']:.2f})")
    print(f"wrote {args.out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
