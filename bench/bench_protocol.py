"""UNet image-forwards per second of the paper's protocol against the strided demo's, in one run.

    python bench/bench_protocol.py [--model faces] [--images 1] [--paper-steps 10,130,250] [--jumps 10/10]
                                   [--strided-steps 1,2,5,10,20,25,50] [--device auto] [--out results/bench]

Both walks inpaint the same cells (held-out faces, thick masks, one seed), every chain of a walk batched into
one ``Sampler.inpaint`` call, as the sweep batches them (chains of different t_T share only the UNet):

1. ``strided`` (the baseline): diffusers' RePaint (``repaint-diffusers``) on the steps walk, the step counts of
   the earlier demo, jumps as given;
2. ``paper``: the authors' RePaint (``repaint``) with t_T on the 250-step respaced grid, jumps as given.

The paper's whole grid (t_T 10, 20, …, 250 with jumps 10/10) costs about 30,000 UNet calls an image, too long
for a CPU benchmark; the default grid keeps its ends and middle (3,630 calls an image). Reported per walk:
image-forwards, seconds, image-forwards/s, and the paper walk's rate as a ratio of the strided one's. The
chains of one batch finish at different times, so the late UNet calls carry fewer images: that shrinking batch
is what the ratio measures. Writes ``<out>/protocol-<model>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aaas_profile import images as images_mod  # noqa: E402
from aaas_profile import masks as masks_mod  # noqa: E402
from aaas_profile import samplers as samplers_mod  # noqa: E402
from aaas_profile.models import load  # noqa: E402
from aaas_profile.precision import pick_device  # noqa: E402
from aaas_profile.sweep import DEFAULT_DATA  # noqa: E402


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run_walk(model, sampler, steps: list[int], cells) -> dict:
    """Inpaint every cell at every step count in one batch; returns forwards, seconds and the rate."""
    originals = torch.stack([c[0] for c in cells for _ in steps])
    masks = torch.stack([c[1] for c in cells for _ in steps])
    device = next(model.unet.parameters()).device
    generators = samplers_mod.make_generators([c[2] for c in cells for _ in steps], device)
    per_image = [s for _ in cells for s in steps]
    start = time.perf_counter()
    result = sampler.inpaint(model.unet, model.scheduler_config, originals, masks, generators, per_image)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    forwards = sum(result.unet_calls)
    return {"sampler": sampler.name, "respacing": samplers_mod.respacing_label(sampler.respacing),
            "steps": steps, "jumps": [sampler.jump_length, sampler.jump_n_sample], "images": len(cells),
            "image_forwards": forwards, "seconds": seconds, "forwards_per_s": forwards / seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="faces")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--paper-steps", default="10,130,250")
    parser.add_argument("--strided-steps", default="1,2,5,10,20,25,50")
    parser.add_argument("--jumps", default="10/10", help="RePaint's j/r for both walks")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args(argv)
    j, r = (int(v) for v in args.jumps.split("/"))
    device = pick_device(args.device)
    model = load(args.model, device=device)
    spec = masks_mod.parse_masks("thick")[0]
    cells = []
    for image in images_mod.load_folder(DEFAULT_DATA, model.resolution, limit=args.images):
        mask = spec.make(model.resolution, masks_mod.mask_seed("mask", spec.name, image.image_id, 0))
        cells.append((image.tensor, mask, masks_mod.mask_seed("noise", spec.name, image.image_id, 0)))
    strided = run_walk(model, samplers_mod.make_sampler("repaint-diffusers", jump_length=j, jump_n_sample=r),
                       ints(args.strided_steps), cells)
    paper = run_walk(model, samplers_mod.make_sampler("repaint", jump_length=j, jump_n_sample=r, respacing=250),
                     ints(args.paper_steps), cells)
    report = {"model": args.model, "device": str(device), "torch_threads": torch.get_num_threads(),
              "load_average": os.getloadavg(), "baseline": "strided", "walks": {"strided": strided, "paper": paper},
              "paper_rate_over_strided": paper["forwards_per_s"] / strided["forwards_per_s"]}
    print(f"{args.model} on {device}, {args.images} image(s), thick mask, jumps {j}/{r}")
    print(f"{'walk':10} {'sampler':18} {'steps':>24} {'forwards':>9} {'seconds':>8} {'fwd/s':>7} {'ratio':>6}")
    for name, walk in (("strided", strided), ("paper", paper)):
        ratio = walk["forwards_per_s"] / strided["forwards_per_s"]
        print(f"{name:10} {walk['sampler'] + ' @' + walk['respacing']:18} {','.join(map(str, walk['steps'])):>24} "
              f"{walk['image_forwards']:9d} {walk['seconds']:8.1f} {walk['forwards_per_s']:7.1f} {ratio:6.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"protocol-{Path(args.model).name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
