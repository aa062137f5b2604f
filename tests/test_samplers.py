import json

import pytest
import torch
from conftest import OracleUNet, make_unet

from aaas_profile.errors import UserError
from aaas_profile.masks import MaskSpec
from aaas_profile.models import DEFAULT_SCHEDULE
from aaas_profile.samplers import (
    SAMPLERS,
    DDIMSampler,
    DiffusersRePaintSampler,
    DPMSolverSampler,
    RePaintSampler,
    Sampler,
    SamplerError,
    make_generators,
    make_sampler,
    sampler_params_json,
)

SIZE = 16  # the oracle costs nothing; 16 px keeps the tensors small
NAMES = list(SAMPLERS)
REPAINTS = ("repaint", "repaint-diffusers")
DETERMINISTIC = ("repaint-diffusers", "ddim", "dpm-solver")  # at eta = 0
# RePaint with resampling jumps where the test allows them; without, where every call must see a sample at its
# timestep's noise level (diffusers' undo_step overshoots that level, see test_inpaint)
WITH_JUMPS = {"repaint": RePaintSampler(5, 2, respacing=None), "repaint-diffusers": DiffusersRePaintSampler(5, 2),
              "ddim": DDIMSampler(), "dpm-solver": DPMSolverSampler()}
NO_JUMPS = {**WITH_JUMPS, "repaint": RePaintSampler(1, 1, respacing=None),
            "repaint-diffusers": DiffusersRePaintSampler(1, 1)}

# The oracle returns the original up to float32 rounding of the last x0 prediction: measured largest |error|
# 1.2e-7 for every sampler at 2-50 steps (DPM-Solver++ at 1 step: 2.5e-5, its one step divides by √ᾱ_999).
ORACLE_ATOL = 1e-6
# Deterministic samplers with the oracle keep the first noise draw in the generated region at every call;
# measured largest drift of the read-back noise 9.6e-5 (2 steps), 2.3e-5 at 5-50 steps (float32 rounding
# amplified by 1/√ᾱ at the first steps).
DRIFT_ATOL = 1e-3
# A cell alone and inside a batch of other cells and step counts is not the same computation (the float32
# UNet sums in another order). Measured largest |difference| over 3 draws x 3 cells (32 px, 10/5/10 steps), at 1
# and 2 threads: repaint (5/2 jumps) 9.6e-6, ddim 1.2e-5, dpm-solver 4.7e-5 (DPM-Solver++ does not clip its x0
# prediction, which divides by √ᾱ_999 ≈ 0.006 at the first step, so rounding grows more); about ten times that.
BATCH_ATOL = {"repaint": 1e-4, "repaint-diffusers": 1e-4, "ddim": 1e-4, "dpm-solver": 5e-4}


# guided-diffusion's training schedule, β in float64 (the one `repaint` samples on; diffusers' schedulers build β in
# float32, and ᾱ_t then differs by up to 2e-8 absolute, which the oracle's 1/√(1 − ᾱ_t) blows up to 1e-6)
ALPHA_BAR64 = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0)


def oracle_for(name: str, originals, **kw) -> OracleUNet:
    """The oracle on the schedule the sampler ``name`` computes with."""
    return OracleUNet(originals, DEFAULT_SCHEDULE, alphas_cumprod=ALPHA_BAR64 if name == "repaint" else None, **kw)


def batch(n: int, family: str = "half", size: int = SIZE):
    torch.manual_seed(1)
    originals = torch.rand(n, 3, size, size)
    masks = torch.stack([MaskSpec(family, family).make(size, seed) for seed in range(n)])
    return originals, masks


def run(sampler: Sampler, unet, originals, masks, steps, seeds=None, **kw):
    seeds = seeds if seeds is not None else list(range(3, 3 + len(originals)))
    return sampler.inpaint(unet, DEFAULT_SCHEDULE, originals, masks, make_generators(seeds, "cpu"), steps, **kw)


# ---- the sampler is right, not just shaped right ---------------------------------------------------------------

@pytest.mark.parametrize("steps", [5, 10, 25])
@pytest.mark.parametrize("name", NAMES)
def test_an_oracle_unet_gives_back_the_original(name, steps):
    """With the exact noise at every call each sampler returns the original, also in the generated region, and
    the UNet is called as often as ``unet_calls`` says (ddim, dpm-solver: once a step)."""
    sampler = WITH_JUMPS[name]
    originals, masks = batch(3)
    oracle = oracle_for(name, originals)
    result = run(sampler, oracle, originals, masks, steps)
    assert (result.images - originals).abs().max() < ORACLE_ATOL
    calls = sampler.unet_calls(steps, DEFAULT_SCHEDULE)
    assert len(oracle.seen) == calls and result.unet_calls == [calls] * 3
    if name not in REPAINTS:
        assert calls == steps


@pytest.mark.parametrize("name", NAMES)
def test_mixed_step_counts_share_unet_calls_and_each_gives_back_the_original(name):
    sampler = WITH_JUMPS[name]
    originals, masks = batch(3)
    steps = [5, 10, 25]  # ascending: the samplers' chain order (conftest.OracleUNet)
    calls = [sampler.unet_calls(s, DEFAULT_SCHEDULE) for s in steps]
    oracle = oracle_for(name, originals, calls=calls)
    seen = []
    result = run(sampler, oracle, originals, masks, steps, on_call=seen.append)
    assert (result.images - originals).abs().max() < ORACLE_ATOL
    assert result.unet_calls == calls and len(oracle.seen) == len(seen) == max(calls) and sum(seen) == sum(calls)


@pytest.mark.parametrize("name", NAMES)
def test_learned_variance_models_are_sampled_with_their_epsilon_half(name):
    """A 6-channel model: epsilon (the oracle's), then a constant v = 0.3 that is no noise prediction."""
    originals, masks = batch(2)
    oracle = oracle_for(name, originals, variance=0.3)
    result = run(WITH_JUMPS[name], oracle, originals, masks, 10)
    assert (result.images - originals).abs().max() < ORACLE_ATOL


def read_back_drift_and_known_std(oracle: OracleUNet, masks: torch.Tensor) -> tuple[float, float]:
    """The largest change of the oracle's read-back noise in the generated region from the first call, and the
    largest |std − 1| of the read-back noise in the known region, over all calls."""
    generate = ~masks.expand(-1, 3, -1, -1).bool()
    first = oracle.seen[0][1]
    drift = max((eps[generate] - first[generate]).abs().max().item() for _, eps in oracle.seen)
    known_std = max(abs(eps[~generate].std().item() - 1) for _, eps in oracle.seen)
    return drift, known_std


@pytest.mark.parametrize("steps", [5, 10, 25])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_every_call_sees_a_sample_at_its_timesteps_noise_level(name, steps):
    """x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε at every call. Generated region: the samplers are deterministic (eta = 0),
    so ε is the first draw at every call. Known region: replaced with fresh unit noise at the level of the step's
    target, so the read-back noise there has std 1 (1,152 values: the estimate varies by 0.021; measured within
    0.049 of 1, bound 0.1). Unlike the returned original, which the oracle makes exact from the last call alone
    (its x0 prediction is exact from any sample), this checks every call."""
    originals, masks = batch(3)
    oracle = OracleUNet(originals, DEFAULT_SCHEDULE)
    run(NO_JUMPS[name], oracle, originals, masks, steps)
    drift, known_std = read_back_drift_and_known_std(oracle, masks)
    assert drift < DRIFT_ATOL and known_std < 0.1


@pytest.mark.parametrize("sign", [-1, 1], ids=["t-stride", "t+stride"])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_a_timestep_off_by_one_stride_fails_the_oracle_checks(name, sign):
    """The oracle reading every call's timestep one stride (100 at 10 steps) off, as a sampler handing the UNet
    the wrong one would: the read-back noise leaves the first draw (measured drift 0.60-330 against 2e-5), and
    at t + stride the returned image is far from the original (measured 0.45-0.48). At t − stride the last call
    of repaint and ddim (t = 0) clamps to 0, where the oracle is right and makes the output exact, so only the
    noise check catches it there; dpm-solver's last call is at t = 100 and its image is off by 0.97."""
    originals, masks = batch(3)
    oracle = OracleUNet(originals, DEFAULT_SCHEDULE, shift=sign * 100)
    result = run(NO_JUMPS[name], oracle, originals, masks, 10)
    drift, _ = read_back_drift_and_known_std(oracle, masks)
    assert drift > 0.1
    if sign > 0 or name == "dpm-solver":
        assert (result.images - originals).abs().max() > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_unet_calls_are_the_forwards_the_sampler_makes(name):
    """Counted by the UNet itself (the oracle keeps one entry per forward), at step counts that divide the
    1000 training steps and one that does not (7)."""
    sampler = WITH_JUMPS[name]
    originals, masks = batch(1)
    for steps in (1, 2, 7, 20, 50):
        oracle = oracle_for(name, originals)
        result = run(sampler, oracle, originals, masks, steps)
        assert len(oracle.seen) == result.unet_calls[0] == sampler.unet_calls(steps, DEFAULT_SCHEDULE), steps
    jumps = name in REPAINTS  # T + jump points · (r − 1) · j
    assert sampler.unet_calls(20, DEFAULT_SCHEDULE) == (20 + 3 * 1 * 5 if jumps else 20)
    assert sampler.unet_calls(250, DEFAULT_SCHEDULE) == (250 + 49 * 5 if jumps else 250)


# ---- with a real (small, random) UNet ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet():
    return make_unet(resolution=32).eval().requires_grad_(False)


@pytest.mark.parametrize("name", NAMES)
def test_a_cells_output_does_not_depend_on_its_batch(unet, name):
    """Image i's noise only from generators[i]: a cell alone, in a batch of other cells and step counts, and
    with its neighbours' seeds changed, gives the same image (up to BATCH_ATOL)."""
    sampler = WITH_JUMPS[name]
    originals, masks = batch(3, "thick", size=32)
    together = run(sampler, unet, originals, masks, [10, 5, 10], seeds=[7, 8, 9]).images
    for i, steps in enumerate([10, 5, 10]):
        alone = run(sampler, unet, originals[i:i + 1], masks[i:i + 1], steps, seeds=[7 + i]).images
        assert (together[i:i + 1] - alone).abs().max() < BATCH_ATOL[name], i
    others = run(sampler, unet, originals, masks, [10, 5, 10], seeds=[1, 8, 2]).images
    assert (others[1] - together[1]).abs().max() < BATCH_ATOL[name]
    assert (others[0] - together[0]).abs().max() > 0.01  # and the seed decides the output


@pytest.mark.parametrize("steps", [5, 25])
def test_ddim_with_replacement_is_repaint_without_jumps(unet, steps):
    """RePaint at eta = 0 without jumps is DDIM whose known part is noised afresh to the next level at every
    step; diffusers' RePaintScheduler does it in the same operations on the same draws as DDIMSampler's
    replacement (measured max difference 0.0 at 5, 10 and 25 steps), an independent check of the latter."""
    originals, masks = batch(3, "thick", size=32)
    repaint = run(DiffusersRePaintSampler(1, 1), unet, originals, masks, steps).images
    assert torch.equal(run(DDIMSampler(), unet, originals, masks, steps).images, repaint)


@pytest.mark.parametrize("name", ["ddim", "dpm-solver"])
def test_known_pixels_come_out_unchanged(unet, name):
    originals, masks = batch(2, "half", size=32)
    result = run(WITH_JUMPS[name], unet, originals, masks, 5)
    keep = masks.expand_as(originals).bool()
    assert torch.allclose(result.images[keep], originals[keep], atol=1e-6)  # measured 0.0; [0, 1] ↔ [−1, 1] rounding
    assert (result.images[~keep] - originals[~keep]).abs().mean() > 0.05  # the random UNet's output is not it


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", ["ddim", "dpm-solver"])
def test_with_nothing_to_keep_the_sampler_is_diffusers_own_loop(unet, name):
    """A mask that keeps nothing makes the replacement a no-op: the output must then be diffusers' unconditional
    sampling with the same scheduler and generator (DDIMPipeline; DDPMPipeline driving DPMSolverMultistep),
    the same operations in the same order, so equal bit for bit (measured max difference 0.0)."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler

    training = {k: DEFAULT_SCHEDULE[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")}
    if name == "ddim":
        pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(**training))
    else:
        scheduler = DPMSolverMultistepScheduler(**training, algorithm_type="dpmsolver++", solver_order=2)
        pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=1, generator=torch.Generator().manual_seed(7), num_inference_steps=10,
                  output_type="np").images
    originals = torch.rand(1, 3, 32, 32)
    ours = run(WITH_JUMPS[name], unet, originals, torch.zeros(1, 1, 32, 32), 10, seeds=[7]).images
    assert torch.equal(ours, torch.from_numpy(theirs).permute(0, 3, 1, 2))


# ---- names, parameters, errors ---------------------------------------------------------------------------------

def test_make_sampler_names_and_parameters():
    assert list(SAMPLERS) == ["repaint", "repaint-diffusers", "ddim", "dpm-solver"]
    repaint = make_sampler("repaint-diffusers", jump_length=5, jump_n_sample=2, eta=1.0)
    assert repaint == DiffusersRePaintSampler(5, 2, 1.0) and (repaint.jump_length, repaint.jump_n_sample) == (5, 2)
    assert repaint.respacing is None
    for name, kind in (("ddim", DDIMSampler), ("dpm-solver", DPMSolverSampler)):
        sampler = make_sampler(name, jump_length=5, jump_n_sample=2, eta=1.0)  # none of these apply
        assert type(sampler) is kind and sampler.name == name
        assert (sampler.jump_length, sampler.jump_n_sample, sampler.respacing) == (0, 0, None)


def test_an_unknown_sampler_is_one_line_naming_the_choices():
    with pytest.raises(SamplerError) as caught:
        make_sampler("nope")
    assert str(caught.value) == "unknown sampler 'nope': choose from repaint, repaint-diffusers, ddim, dpm-solver"
    assert isinstance(caught.value, UserError)


def test_params_json_is_canonical():
    assert sampler_params_json(make_sampler("repaint")) == "{}"
    assert sampler_params_json(make_sampler("ddim")) == "{}"
    assert sampler_params_json(make_sampler("dpm-solver")) == '{"algorithm_type":"dpmsolver++","solver_order":2}'

    class Unsorted(DDIMSampler):
        def params(self):
            return {"b": 1.5, "a": [1, 2]}

    assert sampler_params_json(Unsorted()) == '{"a":[1,2],"b":1.5}'
    assert json.loads(sampler_params_json(Unsorted())) == Unsorted().params()


@pytest.mark.parametrize("name", NAMES)
def test_step_counts_outside_the_schedule_are_refused(name):
    sampler = WITH_JUMPS[name]
    for steps in (0, 1001):
        with pytest.raises(SamplerError, match=f"steps must lie in 1..1000, got {steps}"):
            sampler.unet_calls(steps, DEFAULT_SCHEDULE)
    originals, masks = batch(1)
    with pytest.raises(SamplerError, match="steps must lie in 1..1000"):
        run(sampler, OracleUNet(originals, DEFAULT_SCHEDULE), originals, masks, 1001)


def test_dpm_solver_refuses_a_step_count_that_repeats_a_timestep():
    """At 1000 steps the linspace spacing rounds two timesteps to one (500), a step of length 0 that the
    second-order update divides by (the output was NaN); 999 and below have distinct timesteps."""
    with pytest.raises(SamplerError, match="cannot take 1000 steps.*at most 999"):
        DPMSolverSampler().unet_calls(1000, DEFAULT_SCHEDULE)
    assert DPMSolverSampler().unet_calls(999, DEFAULT_SCHEDULE) == 999
    assert DDIMSampler().unet_calls(1000, DEFAULT_SCHEDULE) == 1000


def test_bad_repaint_parameters_are_refused():
    with pytest.raises(SamplerError, match="jump_length and jump_n_sample must be ≥ 1, got 0/10"):
        make_sampler("repaint", jump_length=0)
    with pytest.raises(SamplerError, match="jump_length and jump_n_sample must be ≥ 1, got 10/0"):
        make_sampler("repaint-diffusers", jump_n_sample=0)
    with pytest.raises(SamplerError, match=r"eta must lie in \[0, 1\], got 1.5"):
        make_sampler("repaint-diffusers", eta=1.5)


# ---- on CUDA (run with -m gpu; skipped without a GPU) ---------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_an_oracle_unet_gives_back_the_original_on_cuda(name):
    """As on the CPU, with the chains' state, generators and schedulers' tensors on the GPU (the same float32
    arithmetic; not yet run on a GPU when written: none was at hand)."""
    originals, masks = batch(3)
    oracle = OracleUNet(originals, DEFAULT_SCHEDULE).to("cuda")
    generators = make_generators([3, 4, 5], "cuda")
    result = WITH_JUMPS[name].inpaint(oracle, DEFAULT_SCHEDULE, originals, masks, generators, 10)
    assert result.images.device.type == "cpu"
    assert (result.images - originals).abs().max() < ORACLE_ATOL
