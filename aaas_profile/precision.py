"""Which floating-point format a sweep computes in, chosen from what the device computes natively.

``auto`` (the sweep's default) is bf16 where the hardware has bf16 arithmetic and fp32 elsewhere:

* a CPU computes bf16 natively when it has AVX512-BF16 (``vdpbf16ps``: Intel Cooper Lake and later, AMD Zen 4
  and later) or AMX-BF16 (Intel Sapphire Rapids and later) and PyTorch's oneDNN says it uses them
  (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``). Without them bf16 is emulated in fp32 and slower than
  fp32, so ``auto`` stays fp32;
* a CUDA device computes bf16 natively from compute capability 8.0 (Ampere) on
  (``torch.cuda.is_bf16_supported(including_emulation=False)``).

The CPU's flags come from PyTorch's own cpuinfo (``torch.cpu.get_capabilities()``) and, where that is
missing (older torch), from ``/proc/cpuinfo``; nothing is guessed from the CPU's name.

Channels-last memory layout (NHWC) is used for the UNet in bf16 on CPU, where oneDNN's bf16 convolutions run
1.2x to 1.7x faster in it (``bench/bench_sweep.py``: README, "Precision"). fp32 on CPU keeps the default layout:
channels-last was faster for the 64-px model in some runs and slower for the 256-px one, and a CPU without bf16
must not get slower. CUDA keeps the default layout until ``bench/bench_sweep.py --device cuda`` (variant
``project-bf16-channels-last``) measures it faster there: no GPU was at hand when this was written.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aaas_profile import options
from aaas_profile.errors import UserError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CHOICES = ("auto", *DTYPES)
# CPU flags that mean bf16 arithmetic in hardware (Linux /proc/cpuinfo spelling, which torch's cpuinfo shares).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags recorded in a run folder: the bf16/fp16 ones and the vector width PyTorch's kernels can use.
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")
# torch.cpu.get_capabilities() spells a few flags differently from /proc/cpuinfo.
_TORCH_NAMES = {"avx512f": "avx512_f"}


class PrecisionError(UserError, ValueError):
    """A dtype that cannot run on the chosen device; the message is one line."""


class DeviceError(UserError, ValueError):
    """A device the tool does not run on, or that this machine lacks; the message is one line."""


def pick_device(name: str, error: type[UserError] = DeviceError) -> torch.device:
    """"auto" is CUDA when present (cuda:LOCAL_RANK under torchrun, one GPU per process), else the CPU; ``error``
    (one line, the calling stage's own) for a device the tool does not run on or this machine lacks."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if not os.environ.get("LOCAL_RANK"):
            return torch.device("cuda")
        local_rank = options.env_int(os.environ, "LOCAL_RANK", error)
        return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    # Only the CPU and CUDA are supported: the samplers, metrics and bf16 policy are written and tested for
    # those two, and torch accepts many more names (mps, meta, xpu, …) that would fail later or silently.
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise error(f"unknown device '{name}': use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"device '{name}' asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise error(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


@dataclass(frozen=True)
class CpuCapability:
    """What this CPU computes natively, as a run folder records it."""

    name: str  # the CPU's model name
    isa: str  # torch.backends.cpu.get_cpu_capability(): the widest vector ISA PyTorch's kernels dispatch to
    flags: tuple[str, ...]  # the RECORDED_FLAGS this CPU has
    onednn_bf16: bool  # oneDNN (PyTorch's CPU convolutions and matmuls) uses the bf16 instructions

    @property
    def native_bf16(self) -> bool:
        """True when bf16 convolutions and matrix products run in hardware (AVX512-BF16 or AMX-BF16)."""
        return self.onednn_bf16 and any(flag in self.flags for flag in BF16_FLAGS)

    def describe(self) -> dict:
        return {**asdict(self), "flags": list(self.flags), "native_bf16": self.native_bf16}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The flags of the first CPU in ``/proc/cpuinfo`` (Linux), or None where there is no such file."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_capability() -> CpuCapability:
    """This machine's CPU: name, PyTorch's dispatch ISA, its bf16-relevant flags, and oneDNN's bf16 support."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        capabilities = get()
        flags = {flag for flag in RECORDED_FLAGS if capabilities.get(_TORCH_NAMES.get(flag, flag))}
        name = str(capabilities.get("cpu_name") or platform.processor() or platform.machine())
    else:
        flags = (cpu_flags() or set()) & set(RECORDED_FLAGS)
        name = platform.processor() or platform.machine()
    return CpuCapability(
        name=name,
        isa=torch.backends.cpu.get_cpu_capability(),
        flags=tuple(flag for flag in RECORDED_FLAGS if flag in flags),
        onednn_bf16=bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    )


def cuda_native_bf16(device: torch.device) -> bool:
    """True on a CUDA device with bf16 tensor cores (compute capability ≥ 8.0)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


@dataclass(frozen=True)
class Choice:
    """The dtype a sweep runs in and why (one line, for the terminal and manifest.json)."""

    dtype: str
    reason: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def choose(requested: str, device_type: str, native_bf16: bool, previous: str | None = None,
           model_prefers: str | None = None) -> Choice:
    """The dtype to run in.

    Args:
        requested: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (what the user asked for).
        device_type: ``cpu`` or ``cuda``.
        native_bf16: whether the device computes bf16 in hardware (``CpuCapability.native_bf16`` or
            ``cuda_native_bf16``).
        previous: the dtype of the run folder being resumed, if any: ``auto`` keeps it, so a folder swept
            before ``auto`` existed (fp32) resumes as it was made.
        model_prefers: a model card's ``auto_dtype``, set where bf16 measurably moved that model's quality
            (README, "Precision"); ``auto`` follows it.

    Raises PrecisionError for fp16 on a CPU (PyTorch's CPU convolutions have no fast fp16 path; bf16 is the
    CPU's half precision) and for an unknown name.
    """
    if requested not in CHOICES:
        raise PrecisionError(f"unknown dtype '{requested}': choose from {', '.join(CHOICES)}")
    if "fp16" in (requested, previous if requested == "auto" else None) and device_type != "cuda":
        what = "--dtype fp16" if requested == "fp16" else "this run folder was swept in fp16 and"
        raise PrecisionError(f"{what} needs a CUDA device; on a CPU use bf16 or fp32 (a new --out for a folder)")
    if requested != "auto":
        return Choice(requested, f"--dtype {requested}")
    if previous is not None:
        return Choice(previous, "the run folder's dtype (resumed with --dtype auto)")
    if model_prefers is not None:
        return Choice(model_prefers, "the model card's auto_dtype (bf16 moved its quality: README, Precision)")
    if native_bf16:
        where = "this CPU has AVX512-BF16 or AMX-BF16" if device_type == "cpu" else "this GPU has bf16 tensor cores"
        return Choice("bf16", f"auto: {where}")
    where = "this CPU has no AVX512-BF16 or AMX-BF16" if device_type == "cpu" else "this GPU has no bf16 tensor cores"
    return Choice("fp32", f"auto: {where}")


def choose_for_training(requested: str, device: torch.device, error: type[UserError] = PrecisionError) -> str:
    """The dtype ``train`` runs in (``choose`` is inference's): the CPU trains in fp32 (bf16 or fp16 asked for on
    it is ``error``, one line); on CUDA ``auto`` is bf16 where the GPU has bf16 tensor cores, else fp16 (with
    loss scaling; emulated bf16 is slow), and a named dtype is taken as given."""
    if device.type != "cuda":
        if requested in ("bf16", "fp16"):
            raise error(f"precision {requested} needs CUDA; the CPU trains in fp32")
        return "fp32"
    if requested == "auto":
        return "bf16" if cuda_native_bf16(device) else "fp16"
    return requested


def channels_last(device_type: str, dtype: str) -> bool:
    """Whether the UNet runs in channels-last layout on this device and dtype (see the module docstring)."""
    return device_type == "cpu" and dtype == "bf16"
