import json
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import sweep_config

from aaas_profile import precision, runs, sweep
from aaas_profile.inpaint import RePaintConfig, inpaint
from aaas_profile.masks import MaskSpec
from aaas_profile.models import load
from aaas_profile.precision import CpuCapability, PrecisionError, choose


def capability(*flags: str, onednn_bf16: bool = True) -> CpuCapability:
    return CpuCapability(name="test CPU", isa="AVX512", flags=flags, onednn_bf16=onednn_bf16)


@pytest.mark.parametrize(("flags", "onednn", "native"), [
    (("avx2", "avx512f", "avx512_bf16"), True, True),  # AMD Zen 4/5, Intel Cooper Lake
    (("avx2", "avx512f", "amx_tile", "amx_bf16"), True, True),  # AMX without AVX512-BF16 listed
    (("avx2", "avx512f"), True, False),  # Skylake-SP: AVX-512 but no bf16 arithmetic
    (("avx2",), True, False),
    (("avx2", "avx512f", "avx512_bf16"), False, False),  # oneDNN built without bf16: emulated, slow
])
def test_auto_picks_bf16_exactly_when_the_cpu_computes_it(flags, onednn, native):
    cpu = capability(*flags, onednn_bf16=onednn)
    assert cpu.native_bf16 is native
    assert choose("auto", "cpu", cpu.native_bf16).dtype == ("bf16" if native else "fp32")


def test_forced_dtypes_and_what_auto_defers_to():
    for forced in ("fp32", "bf16"):  # forcing ignores the hardware, both ways
        assert choose(forced, "cpu", native_bf16=False).dtype == forced
        assert choose(forced, "cpu", native_bf16=True).dtype == forced
    assert choose("fp16", "cuda", native_bf16=True).dtype == "fp16"
    assert choose("auto", "cuda", native_bf16=True).dtype == "bf16"
    assert choose("auto", "cuda", native_bf16=False).dtype == "fp32"
    # A resumed folder keeps its dtype under auto (an fp32 folder from before auto existed stays fp32) ...
    assert choose("auto", "cpu", native_bf16=True, previous="fp32").dtype == "fp32"
    assert choose("auto", "cpu", native_bf16=False, previous="bf16").dtype == "bf16"
    # ... and a model card's auto_dtype overrides the hardware's answer.
    assert choose("auto", "cpu", native_bf16=True, model_prefers="fp32").dtype == "fp32"
    with pytest.raises(PrecisionError, match="needs a CUDA device"):
        choose("fp16", "cpu", native_bf16=True)
    with pytest.raises(PrecisionError, match="swept in fp16 and needs a CUDA device"):
        choose("auto", "cpu", native_bf16=True, previous="fp16")
    with pytest.raises(PrecisionError, match="unknown dtype 'fp64'"):
        choose("fp64", "cpu", native_bf16=True)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(path) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "absent") is None


def test_this_machines_answer_agrees_with_its_cpu_flags():
    """Whatever machine this is: PyTorch's cpuinfo and the kernel's /proc/cpuinfo list the same bf16 flags, and
    auto's answer follows them."""
    cpu = precision.cpu_capability()
    assert cpu.isa == torch.backends.cpu.get_cpu_capability() and cpu.name
    flags = precision.cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo (not Linux)")
    assert set(cpu.flags) & {"avx512_bf16"} == flags & {"avx512_bf16"}
    kernel_says = bool(flags & set(precision.BF16_FLAGS)) and cpu.onednn_bf16
    assert cpu.native_bf16 is kernel_says
    assert choose("auto", "cpu", cpu.native_bf16).dtype == ("bf16" if kernel_says else "fp32")


def test_a_bf16_cpu_sweep_records_its_dtype_and_the_cpu(model_dir, image_dir, tmp_path):
    result = sweep.run(sweep_config(model_dir, image_dir, tmp_path / "run", masks="half", dtype="bf16",
                                    device="cpu"))
    table = runs.read_scores(result.run_dir)
    assert set(table["dtype"]) == {"bf16"} and table["value"].notna().all()
    assert tomllib.loads((result.run_dir / "config.toml").read_text())["dtype"] == "bf16"
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["dtype"] == "bf16" and manifest["dtype_reason"] == "--dtype bf16"
    assert manifest["cpu"] == precision.cpu_capability().describe()
    assert manifest["channels_last"] is True


def test_auto_is_resolved_before_it_is_recorded(model_dir, image_dir, tmp_path):
    prepared = sweep.prepare(sweep_config(model_dir, image_dir, tmp_path / "run", dtype="auto", device="cpu"))
    expected = "bf16" if precision.cpu_capability().native_bf16 else "fp32"
    assert prepared.config.dtype == expected and prepared.dtype_reason.startswith("auto: this CPU")
    assert next(prepared.model.unet.parameters()).dtype == precision.DTYPES[expected]


def test_resuming_with_another_dtype_is_refused_but_auto_keeps_the_folders(model_dir, image_dir, tmp_path):
    out = tmp_path / "run"
    sweep.run(sweep_config(model_dir, image_dir, out, masks="half", steps="5", dtype="fp32", device="cpu"))
    with pytest.raises(runs.RunError, match="other dtype"):
        sweep.prepare(sweep_config(model_dir, image_dir, out, masks="half", steps="5", dtype="bf16", device="cpu"))
    # A folder swept in fp32 (as every folder from before auto was) resumes under auto, on any CPU, in fp32.
    again = sweep.prepare(sweep_config(model_dir, image_dir, out, masks="half", steps="5,10", dtype="auto",
                                       device="cpu"))
    assert again.config.dtype == "fp32" and "run folder's dtype" in again.dtype_reason


def test_bf16_outputs_stay_close_to_fp32(model_dir: Path):
    fp32 = load(str(model_dir), dtype=torch.float32)
    bf16 = load(str(model_dir), dtype=torch.bfloat16, channels_last=True)  # as a sweep on CPU loads it
    torch.manual_seed(0)
    x, t = torch.randn(4, 3, 64, 64), torch.tensor([999, 500, 100, 10])
    with torch.inference_mode():
        a, b = fp32.unet(x, t).sample, bf16.unet(x.bfloat16(), t).sample.float()
    relative = float((a - b).norm() / a.norm())
    # Measured on this test UNet: 1.22e-2 to 1.25e-2 over 5 inputs (bf16 keeps 8 significant bits, 2^-9 = 2e-3
    # rounding per operation, accumulated over the network). Above 1e-4 proves bf16 really ran.
    assert 1e-4 < relative < 2.5e-2

    originals = torch.rand(4, 3, 64, 64)
    masks = torch.stack([MaskSpec("thick", "thick").make(64, i) for i in range(4)])
    runs_ = [inpaint(m.unet, m.scheduler_config, originals, masks, [0, 1, 2, 3], 10, RePaintConfig(1, 1)).images
             for m in (fp32, bf16)]
    difference = (runs_[0] - runs_[1]).abs()
    # Measured: mean |difference| 1.1e-3 to 1.8e-3 (of the [0, 1] range) over 3 batches of 4 cells, 10 steps;
    # single generated pixels move up to 0.19, where the sampling chain amplifies a rounding difference.
    assert float(difference.mean()) < 5e-3
    assert float(difference[masks.expand_as(difference) == 1].max()) == 0  # known pixels are the originals
