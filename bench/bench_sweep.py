"""Sweep and scoring throughput, each as a ratio against a baseline measured in the same run.

    python bench/bench_sweep.py [--model NAME_OR_FOLDER] [--images 8] [--steps 10,20] [--device auto]
                                [--variants ...] [--repeats 1] [--out results/bench]

Sweep: the same cells (images × mask, one seed) at each step count, RePaint 10/10, run several ways:

1. ``naive``: diffusers' own ``RePaintPipeline``, one image at a time, fp32 (the baseline);
2. ``project-b1``: the project's sampler, one image at a time (same outputs as naive, checked);
3. ``project-batched``: all cells of a step count in one batch;
4. ``project-mixed``: every (cell, step count) item in one batch, step counts sharing UNet calls;
5. ``project-channels-last``: 3. with the UNet in channels-last memory layout (what a CPU sweep runs in fp32);
6. ``project-bf16`` and ``project-bf16-channels-last``: 3. in bf16, the second as ``--dtype auto`` runs it on
   a CPU with AVX512-BF16 or AMX-BF16;

and on CUDA, instead of 5., ``project-fp16`` and ``project-bf16-compile`` (bf16 under ``torch.compile``);
``--variants`` picks any of them on any device. ``--repeats N`` runs the variants round-robin N times and keeps
each one's fastest time, which is what a machine shared with other work can still measure.

Reported: seconds, UNet image-forwards/s, images/s, speed-up over naive, the largest output difference to
the naive outputs, and achieved FLOP/s against this device's measured peak for the variant's precision (a
large matrix product: fp32 for fp32 variants, bf16 for half-precision ones), with the UNet's FLOPs per
image-forward counted by ``torch.utils.flop_counter``. Attention runs through PyTorch's SDPA (diffusers'
``AttnProcessor2_0``); the table header names the processor in use.

Scoring: all six metrics on the outputs, batched against one image at a time, on the same device.

Writes ``<out>/sweep-<model>.json`` (with the CPU's name, flags and the load average before and after) and
prints a table. The default model is the bundled ``faces`` (what a CPU user
sweeps); ``--model random64`` builds a 9 M-parameter 64-px UNet and ``--model celeba-random`` the 256-px
``celeba`` architecture (113.7 M parameters, about 496 GFLOP per forward), both with random weights (speed
does not depend on them). ``make bench`` runs ``faces`` and a short ``celeba-random`` run (2 images, 5 steps,
the batched variants only); the GPU measurement the performance issue asks for is

    python bench/bench_sweep.py --model celeba-random --device cuda --images 8
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from aaas_profile import images as images_mod
from aaas_profile import metrics
from aaas_profile.inpaint import RePaintConfig, inpaint, unet_calls
from aaas_profile.masks import MaskSpec, mask_seed
from aaas_profile.models import DEFAULT_SCHEDULE, cast, load
from aaas_profile.precision import cpu_capability

ROOT = Path(__file__).resolve().parents[1]


def bench_unet():
    """A 64-px DDPM UNet of a realistic shape for CPU work (about 9 M parameters)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=64, in_channels=3, out_channels=3, layers_per_block=2,
                       block_out_channels=(64, 128, 128, 256),
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")).eval()


def celeba_unet():
    """The ``celeba`` model's architecture (``google/ddpm-ema-celebahq-256``'s config) with random weights."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
                       block_out_channels=(128, 128, 256, 256, 512, 512),
                       down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D",
                                         "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D",
                                       "UpBlock2D"),
                       downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6).eval()


def flops_per_forward(unet, resolution: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, resolution, resolution, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, 500)
    return float(counter.get_total_flops())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Measured peak rate of this device in ``dtype`` (FLOP/s): the faster of a large matrix product and the
    same product as a 1×1 convolution, each the fastest of ``repeats`` (on a machine shared with other work the
    fastest run is the one closest to what the hardware can do).

    The convolution matters on CPUs: PyTorch sends fp32 matrix products to MKL, which on AMD CPUs runs far
    below what oneDNN's convolutions (the UNet's bulk) reach, so a matmul-only "peak" would be beaten by the
    model itself. fp32 on CUDA is measured with TF32 off (PyTorch's default for matmul). cuDNN's convolutions
    may use TF32 by default, so an fp32 variant's share of this peak can overstate how close it is to the
    hardware limit.
    """
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    # A 1×1 convolution of (1, size, 32, 32) by (size, size, 1, 1): size · size · 1024 multiply-adds.
    x = torch.randn(1, size, 32, 32, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(size, size, 1, 1, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    rates = []
    for fn, flop in ((lambda: a @ b, 2 * size**3), (lambda: torch.nn.functional.conv2d(x, w), 2 * size * size * 1024)):
        with torch.inference_mode():
            fn()
            times = []
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                fn()
                synchronize(device)
                times.append(time.perf_counter() - start)
        rates.append(flop / min(times))
    return max(rates)


def timed(fn, device: torch.device):
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


FP32_VARIANTS = ("naive", "project-b1", "project-batched", "project-mixed")
CPU_VARIANTS = (*FP32_VARIANTS, "project-channels-last", "project-bf16", "project-bf16-channels-last")
CUDA_VARIANTS = (*FP32_VARIANTS, "project-fp16", "project-bf16", "project-bf16-channels-last", "project-bf16-compile")
ALL_VARIANTS = tuple(dict.fromkeys((*CPU_VARIANTS, *CUDA_VARIANTS)))
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="faces", help="model name or folder; 'random64' builds a 9 M-parameter "
                        "64-px UNet, 'celeba-random' the 256-px celeba architecture, both with random weights")
    parser.add_argument("--images", type=int, default=8, help="cells per step count; 8 is a sweep's default batch")
    parser.add_argument("--steps", default="10,20")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated, 'naive' first; default {','.join(CPU_VARIANTS)} on CPU and "
                        f"{','.join(CUDA_VARIANTS)} on CUDA")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the variants round-robin this many times and keep each one's fastest time")
    parser.add_argument("--no-scoring", action="store_true", help="skip the scoring throughput measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    variants = (args.variants.split(",") if args.variants
                else CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS)
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown or variants[0] != "naive":
        parser.error(f"--variants: {', '.join(sorted(unknown)) or 'naive must come first'}; "
                     f"choose from {', '.join(ALL_VARIANTS)}")
    if args.repeats < 1:
        parser.error("--repeats must be ≥ 1")
    load_before = os.getloadavg()

    if args.model == "random64":
        unet, schedule, resolution, model_name = bench_unet(), DEFAULT_SCHEDULE, 64, "bench64 (random weights)"
    elif args.model == "celeba-random":
        unet, schedule, resolution, model_name = celeba_unet(), DEFAULT_SCHEDULE, 256, "celeba (random weights)"
    else:
        loaded = load(args.model)
        unet, schedule, resolution, model_name = loaded.unet, loaded.scheduler_config, loaded.resolution, loaded.name
    unet = unet.to(device).requires_grad_(False)
    steps_grid = [int(s) for s in args.steps.split(",")]
    config = RePaintConfig()  # RePaint's 10/10
    pictures = images_mod.load_folder(ROOT / "datasets" / "sample", resolution, limit=args.images)
    # More cells than sample images: repeat the images with other mask and noise seeds.
    cells = [(pictures[i % len(pictures)], i // len(pictures)) for i in range(args.images)]
    originals = torch.stack([p.tensor for p, _ in cells])
    spec = MaskSpec("thick", "thick")
    masks = torch.stack([spec.make(resolution, mask_seed("mask", "thick", p.image_id, s)) for p, s in cells])
    seeds = [mask_seed("noise", "thick", p.image_id, s) for p, s in cells]
    n = len(cells)

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
                              generator=torch.Generator(device).manual_seed(seeds[i]), output_type="np")
                outs[(steps, i)] = torch.from_numpy(result.images[0]).permute(2, 0, 1)
        return outs

    def project_b1():
        return {(steps, i): inpaint(unet, schedule, originals[i:i + 1], masks[i:i + 1], [seeds[i]], steps,
                                    config).images[0] for steps in steps_grid for i in range(n)}

    def batched(model):
        def run():
            outs = {}
            for steps in steps_grid:
                images = inpaint(model, schedule, originals, masks, seeds, steps, config).images
                outs.update({(steps, i): images[i] for i in range(n)})
            return outs
        return run

    def project_mixed():
        items = [(steps, i) for steps in steps_grid for i in range(n)]
        idx = [i for _, i in items]
        images = inpaint(unet, schedule, originals[idx], masks[idx], [seeds[i] for i in idx],
                         [s for s, _ in items], config).images
        return {item: images[k] for k, item in enumerate(items)}

    def variant(name: str):
        """(function, precision) of a variant; the others run on a converted copy of the UNet."""
        if name in FP32_VARIANTS:
            return {"naive": naive, "project-b1": project_b1, "project-batched": batched(unet),
                    "project-mixed": project_mixed}[name], "fp32"
        precision = name.split("-")[1] if name.split("-")[1] in HALF else "fp32"
        model = cast(copy.deepcopy(unet), HALF.get(precision, torch.float32))
        if name.endswith("channels-last"):
            model = model.to(memory_format=torch.channels_last)
        if name.endswith("compile"):
            model = torch.compile(model)
            inpaint(model, schedule, originals, masks, seeds, steps_grid[0], config)  # compile outside the timing
        return batched(model), precision

    calls = {s: unet_calls(s, config, schedule) for s in steps_grid}
    forwards = n * sum(calls.values())
    flops = flops_per_forward(unet, resolution, device)
    peaks = {"fp32": peak_flops(device)}
    if any(name.split("-")[1:2] in (["bf16"], ["fp16"]) for name in variants):
        peaks["bf16"] = peak_flops(device, torch.bfloat16)
    attention = sorted({type(m.processor).__name__ for m in unet.modules() if hasattr(m, "processor")}) or ["none"]

    prepared = {name: variant(name) for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, dict] = {}
    for repeat in range(args.repeats):  # round-robin, so every variant sees the same mix of machine load
        for name in variants:
            outputs[name], seconds = timed(prepared[name][0], device)
            times[name].append(seconds)
            print(f"  {name}: {seconds:.1f} s" + (f" (round {repeat + 1})" if args.repeats > 1 else ""), flush=True)
    rows, reference, baseline = [], outputs[variants[0]], min(times[variants[0]])
    for name in variants:
        precision, outs, seconds = prepared[name][1], outputs[name], min(times[name])
        diff = max(float((outs[k].float() - reference[k]).abs().max()) for k in reference)
        peak = peaks["fp32" if precision == "fp32" else "bf16"]
        rows.append({"variant": name, "precision": precision, "seconds": seconds, "all_seconds": times[name],
                     "unet_forwards_per_s": forwards / seconds, "images_per_s": len(reference) / seconds,
                     "speedup_vs_naive": baseline / seconds, "max_abs_diff_vs_naive": diff,
                     "achieved_gflops": flops * forwards / seconds / 1e9,
                     "percent_of_peak": 100 * flops * forwards / seconds / peak,
                     "percent_of_fp32_peak": 100 * flops * forwards / seconds / peaks["fp32"]})

    scoring = None
    if not args.no_scoring:
        outs = torch.stack([reference[k] for k in sorted(reference)]).to(device)
        refs = torch.stack([originals[i] for _, i in sorted(reference)]).to(device)
        _, one_by_one = timed(lambda: [metrics.score(outs[i:i + 1], refs[i:i + 1]) for i in range(len(outs))],
                              device)
        _, together = timed(lambda: metrics.score(outs, refs), device)
        scoring = {"images": len(outs), "one_at_a_time_images_per_s": len(outs) / one_by_one,
                   "batched_images_per_s": len(outs) / together, "speedup": one_by_one / together}

    cpu = cpu_capability().describe()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu["name"]
    load_after = os.getloadavg()
    report = {"model": model_name, "resolution": resolution, "images": n, "steps": steps_grid,
              "unet_calls_per_image": calls, "unet_forwards": forwards, "gflop_per_forward": flops / 1e9,
              "device": str(device), "device_name": device_name, "cpu": cpu, "attention_processors": attention,
              "threads": torch.get_num_threads(), "repeats": args.repeats,
              "load_average_1_5_15_min": {"before": load_before, "after": load_after},
              **{f"measured_peak_gflops_{k}": v / 1e9 for k, v in peaks.items()},
              "torch": torch.__version__, "sweep": rows, "scoring": scoring,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sweep-{args.model if args.model in ('random64', 'celeba-random') else model_name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")

    peak_text = ", ".join(f"{k} {v / 1e9:,.0f}" for k, v in peaks.items())
    print(f"sweep bench · {model_name}, {resolution} px, {n} images × steps {steps_grid} (RePaint 10/10), "
          f"{forwards} UNet image-forwards, {flops / 1e9:.2f} GFLOP each; {device_name} ({device}; CPU flags "
          f"{' '.join(cpu['flags'])}), {torch.get_num_threads()} threads, measured peak GFLOP/s: {peak_text}; "
          f"attention {', '.join(attention)}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
          + (f"; fastest of {args.repeats} rounds" if args.repeats > 1 else ""))
    print(f"{'variant':<28}{'s':>8}{'fwd/s':>9}{'img/s':>8}{'× naive':>9}{'max|Δ|':>10}{'GFLOP/s':>10}{'% peak':>8}"
          f"{'% fp32 pk':>10}")
    for r in rows:
        print(f"{r['variant']:<28}{r['seconds']:>8.2f}{r['unet_forwards_per_s']:>9.1f}{r['images_per_s']:>8.2f}"
              f"{r['speedup_vs_naive']:>9.2f}{r['max_abs_diff_vs_naive']:>10.2e}{r['achieved_gflops']:>10.1f}"
              f"{r['percent_of_peak']:>8.1f}{r['percent_of_fp32_peak']:>10.1f}")
    if scoring is not None:
        print(f"scoring, six metrics, {scoring['images']} images: one at a time "
              f"{scoring['one_at_a_time_images_per_s']:.1f} img/s, batched {scoring['batched_images_per_s']:.1f} "
              f"img/s (× {scoring['speedup']:.2f})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
