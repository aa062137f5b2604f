import json
import math

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
    parse_respacing,
    respaced_timesteps,
    respacing_label,
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


@pytest.mark.numeric
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


# ---- repaint: RePaint as its authors ran it (docs/samplers.md) -----------------------------------------------

def test_the_respaced_grid_is_guided_diffusions():
    """N timesteps from 0 to 999 at a float-summed stride of 999/(N − 1), rounded half to even. Expected values
    are those of guided-diffusion's ``space_timesteps`` (run on these N): at N = 250 the stride 4.012 makes steps
    of 4 up to 164 and 5 from there; at N = 21 the float sum reaches 499.4999…, so index 10 is 499 where the exact
    999·10/20 = 499.5 would round to 500."""
    grid = respaced_timesteps(1000, 250)
    assert len(grid) == 250 and grid[:3] == [0, 4, 8] and grid[39:44] == [156, 160, 164, 169, 173]
    assert grid[-2:] == [995, 999] and grid[9] == 36
    assert respaced_timesteps(1000, 21)[10] == 499
    assert respaced_timesteps(1000, 1000) == list(range(1000)) and respaced_timesteps(1000, 1) == [0]
    assert respaced_timesteps(1000, 10) == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]


# (t_T, N, first UNet timestep): guided-diffusion's grid[t_T − 1] (space_timesteps run on these N)
FIRST_TIMESTEPS = [(10, 250, 36), (50, 250, 197), (250, 250, 999), (1, 250, 0), (30, 50, 591), (20, 20, 999),
                   (7, 100, 61), (100, 1000, 99), (10, None, 999), (1, None, 0)]


@pytest.mark.parametrize(("t_T", "n", "first"), FIRST_TIMESTEPS, ids=str)
def test_the_first_unet_call_is_at_grid_index_t_T_minus_1(t_T, n, first):
    """Told by the sampler and seen by the UNet: the chain starts as pure noise at grid index t_T − 1."""
    sampler = RePaintSampler(10, 10, n)
    assert sampler.unet_timesteps(t_T, DEFAULT_SCHEDULE)[0] == first
    originals, masks = batch(1, size=8)
    oracle = oracle_for("repaint", originals)
    run(sampler, oracle, originals, masks, t_T)
    assert oracle.seen[0][0] == first


def jump_points(t_T: int, j: int) -> int:
    """#{0, j, 2j, … below t_T − j}."""
    return max(0, math.ceil((t_T - j) / j))


@pytest.mark.parametrize(("j", "r"), [(10, 10), (5, 3), (1, 1), (3, 2), (1, 4)], ids=str)
def test_unet_calls_follow_the_formula(j, r):
    """t_T + (r − 1)·j·#{jump points below t_T − j}, for every t_T on the 250-step grid."""
    sampler = RePaintSampler(j, r)
    for t_T in range(1, 251):
        expected = t_T + (r - 1) * j * jump_points(t_T, j)
        assert sampler.unet_calls(t_T, DEFAULT_SCHEDULE) == len(sampler.unet_timesteps(t_T, DEFAULT_SCHEDULE)) \
            == expected, t_T


def test_unet_calls_at_the_papers_settings_are_the_forwards_made():
    """10, 210, 410, 2,410 calls at t_T 10, 30, 50, 250 with 10/10 on N = 250, counted by the UNet itself."""
    sampler = make_sampler("repaint")
    originals, masks = batch(1, size=8)
    for t_T, calls in ((10, 10), (30, 210), (50, 410), (250, 2410)):
        oracle = oracle_for("repaint", originals)
        result = run(sampler, oracle, originals, masks, t_T)
        assert len(oracle.seen) == result.unet_calls[0] == sampler.unet_calls(t_T, DEFAULT_SCHEDULE) == calls


def reference_walk(t_T: int, j: int, r: int) -> list[int]:
    """RePaint's walk over grid indices, built segment by segment: down from t_T − 1 to the highest jump point
    m (multiples of j below t_T − j), then r − 1 times up j and down again to m, then down to the next point,
    and after the last point down to −1 (the image)."""
    walk = [t_T - 1]

    def go(target: int) -> None:
        step = 1 if target > walk[-1] else -1
        walk.extend(range(walk[-1] + step, target + step, step))

    for m in reversed(range(0, t_T - j, j)):
        go(m)
        for _ in range(r - 1):
            go(m + j)
            go(m)
    go(-1)
    return walk


def reference_repaint(unet, original, mask, seed, t_T, n, j, r, variance="fixed_small"):
    """RePaint for one image, step by step from the paper's Algorithm 1 and its authors' schedule: ε-model on the
    guided-diffusion grid (β in float64, the linear 1e-4 … 0.02 training schedule), DDPM posterior mean from the
    x0 prediction clipped to [−1, 1], σ² the model's (fixed small β̃, fixed large β, or learned range
    exp(f·log β + (1 − f)·log β̃), f = (v + 1)/2), undo x_k = √(1 − β_k)·x_(k−1) + √β_k·z. Draws from one
    generator: the start, then per call z (update) and, from the second call, z′ (known part); per undo z.
    Returns the last sample in [0, 1] and the UNet's timesteps."""
    train = 1000
    alpha_bar_train, product = [], 1.0
    for i in range(train):
        product *= 1 - (1e-4 + (0.02 - 1e-4) * i / (train - 1))
        alpha_bar_train.append(product)
    grid, position = [], 0.0
    for _ in range(n):
        grid.append(round(position))
        position += (train - 1) / (n - 1) if n > 1 else 1.0

    def alpha_bar(k):
        return 1.0 if k < 0 else alpha_bar_train[grid[k]]

    generator = torch.Generator().manual_seed(seed)

    def normal():
        return torch.randn(original.shape, generator=generator)

    known, x, timesteps = original * 2 - 1, normal(), []
    walk = reference_walk(t_T, j, r)
    for k, after in zip(walk, walk[1:], strict=False):
        if after > k:
            beta = 1 - alpha_bar(after) / alpha_bar(k)
            x = math.sqrt(1 - beta) * x + math.sqrt(beta) * normal()
            continue
        z = normal()
        if timesteps:
            a = alpha_bar(k)
            x = mask * (math.sqrt(a) * known + math.sqrt(1 - a) * normal()) + (1 - mask) * x
        timesteps.append(grid[k])
        with torch.inference_mode():
            out = unet(x, torch.tensor([grid[k]])).sample
        eps = out[:, :3]
        a, a_prev = alpha_bar(k), alpha_bar(k - 1)
        beta = 1 - a / a_prev
        x0 = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
        mean = math.sqrt(a_prev) * beta / (1 - a) * x0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * x
        if k == 0:
            x = mean
            continue
        posterior = (1 - a_prev) / (1 - a) * beta
        if out.shape[1] == 6:
            f = (out[:, 3:] + 1) / 2
            sigma = torch.exp(0.5 * (f * math.log(beta) + (1 - f) * math.log(posterior)))
        else:
            sigma = math.sqrt(posterior if variance == "fixed_small" else beta)
        x = mean + sigma * z
    return (x / 2 + 0.5).clamp(0, 1), timesteps


def test_the_reference_walk_is_the_schedule_from_the_issue():
    """The reference's own walk, spelled out at t_T = 12 with j = 5, r = 2 (jump points 0 and 5, below 7)."""
    assert reference_walk(12, 5, 2) == [11, 10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
                                        1, 2, 3, 4, 5, 4, 3, 2, 1, 0, -1]


class Recording(torch.nn.Module):
    """A UNet that records the timesteps it is told (and their dtype), and optionally rewrites its output."""

    def __init__(self, unet, rewrite=None):
        super().__init__()
        self.unet, self.rewrite, self.seen = unet, rewrite, []

    def forward(self, sample, t):
        self.seen.append(t.clone())
        out = self.unet(sample, t)
        return out if self.rewrite is None else type(out)(sample=self.rewrite(out.sample))


# The sampler (float32 state, float64 coefficients) against the reference (float32 tensors, its own formulas and
# op order) on the same UNet and draws: measured largest |difference| 8.9e-7 over REFERENCE_CASES at 1 and 2
# threads ([0, 1] units), a few float32 ulps; about ten times that. A wrong index, draw or coefficient moves the
# output by 0.01-1 (docs/samplers.md, "Checks").
REFERENCE_ATOL = 1e-5


REFERENCE_CASES = [  # variance, channels, t_T, N, jumps
    ("fixed_small", 3, 12, 20, (5, 2)), ("fixed_large", 3, 12, 20, (5, 2)), ("learned_range", 6, 12, 20, (5, 2)),
    ("fixed_small", 3, 12, 12, (5, 2)), ("learned_range", 6, 10, 250, (10, 10)), ("fixed_small", 3, 25, 250, (10, 2))]


def check_against_reference(variance, channels, t_T, n, jumps, seeds=(5, 6)):
    unet = make_unet(resolution=16, out_channels=channels).eval().requires_grad_(False)
    originals, masks = batch(len(seeds), "thick", size=16)
    schedule = {**DEFAULT_SCHEDULE, "variance_type": variance}
    recording = Recording(unet)
    ours = RePaintSampler(*jumps, n).inpaint(recording, schedule, originals, masks,
                                             make_generators(list(seeds), "cpu"), t_T).images
    for i, seed in enumerate(seeds):
        theirs, timesteps = reference_repaint(unet, originals[i:i + 1], masks[i:i + 1], seed, t_T, n, *jumps,
                                              variance=variance)
        assert (ours[i:i + 1] - theirs).abs().max() < REFERENCE_ATOL
        assert [int(t[i]) for t in recording.seen] == timesteps
    assert all(t.dtype == torch.int64 for t in recording.seen)  # the original integer timestep


@pytest.mark.parametrize(("variance", "channels", "t_T", "n", "jumps"), REFERENCE_CASES, ids=str)
def test_the_sampler_equals_an_independent_step_by_step_reference(variance, channels, t_T, n, jumps):
    check_against_reference(variance, channels, t_T, n, jumps)


@pytest.mark.slow
@pytest.mark.parametrize("variance", ["fixed_small", "learned_range"])
def test_the_sampler_equals_the_reference_at_the_papers_jumps(variance):
    """t_T = 50 with 10/10 on N = 250 (410 calls), on one image."""
    check_against_reference(variance, 6 if variance == "learned_range" else 3, 50, 250, (10, 10), seeds=(5,))


@pytest.mark.parametrize("t_T", [10, 30])
def test_an_oracle_unet_gives_back_the_original_at_the_papers_settings(t_T):
    """Jumps 10/10 on N = 250, starting low on the grid (t_T = 10: timestep 36) or with jumps: the oracle's exact
    x0 makes the last step's mean the original, also in the generated region (ORACLE_ATOL)."""
    originals, masks = batch(3)
    result = run(make_sampler("repaint"), oracle_for("repaint", originals), originals, masks, t_T)
    assert (result.images - originals).abs().max() < ORACLE_ATOL


def noise_level_errors(sampler, steps, alpha_bar) -> tuple[float, float]:
    """Run ``sampler`` with an oracle that reads back the noise of every sample it is given at the timestep it is
    told; the largest |std − 1| of that noise over all calls, in the generated and in the known region (from the
    second call on: the first sees pure noise everywhere). 3 images of 32 px, half masks: 4,608 values a region,
    a std estimate varies by 1/√(2·4,608) = 0.010."""
    originals, masks = batch(3, size=32)
    oracle = OracleUNet(originals, DEFAULT_SCHEDULE, alphas_cumprod=alpha_bar)
    sampler.inpaint(oracle, DEFAULT_SCHEDULE, originals, masks, make_generators([3, 4, 5], "cpu"), steps)
    generate = ~masks.expand(-1, 3, -1, -1).bool()
    unknown = max(abs(eps[generate].std().item() - 1) for _, eps in oracle.seen)
    known = max(abs(eps[~generate].std().item() - 1) for _, eps in oracle.seen[1:])
    return unknown, known


# Measured over 5 seeds (50 calls each): largest |std − 1| 0.029 generated, 0.035 known (410 calls at N = 50 with
# 10/10: 0.041); about 6 standard errors. diffusers' undo, one stride off, reads 0.17-0.21 at 20 steps 5/3.
NOISE_LEVEL_TOL = 0.06


def test_every_call_sees_a_sample_at_its_timesteps_noise_level_jumps_included():
    """With the oracle's exact x0 the DDPM posterior with β̃ (fixed small) puts x_(k−1) exactly at its marginal
    √ᾱ·x0 + √(1 − ᾱ)·ε, the undo takes it exactly to the marginal one index up, and the known region is noised
    to the call's level: so the read-back noise has std 1 at every call, jumps included. A coarse grid (N = 20,
    strides of 52-53 training steps) makes a step off by one index change the level a lot. diffusers' RePaint
    (eta = 1: the same posterior) fails the same check at its jumps (one stride off, see test_inpaint)."""
    assert max(noise_level_errors(RePaintSampler(5, 3, 20), 20, ALPHA_BAR64)) < NOISE_LEVEL_TOL
    assert max(noise_level_errors(RePaintSampler(5, 3, None), 20, ALPHA_BAR64)) < NOISE_LEVEL_TOL
    diffusers_unknown, diffusers_known = noise_level_errors(DiffusersRePaintSampler(5, 3, eta=1.0), 20, None)
    assert diffusers_unknown > 2 * NOISE_LEVEL_TOL and diffusers_known > 2 * NOISE_LEVEL_TOL


def test_learned_variance_is_used():
    """A 6-channel model: shifting its variance half by 0.5 changes repaint's output (measured by 0.21; the
    other samplers read epsilon only, test_learned_variance_models_are_sampled_with_their_epsilon_half). At the
    ends of the learned range, v = −1 is fixed small and v = +1 fixed large: a 3-channel model sampled with its
    fixed variance equals it with a constant variance half appended (float32 rounding of exp(0.5·log σ²)
    against √σ²: measured 4.8e-7; bound about twenty times that)."""
    originals, masks = batch(2, "thick", size=16)
    learned = {**DEFAULT_SCHEDULE, "variance_type": "learned_range"}
    sampler = RePaintSampler(5, 2, 20)

    def sample(unet, schedule):
        return sampler.inpaint(unet, schedule, originals, masks, make_generators([5, 6], "cpu"), 10).images

    unet = make_unet(resolution=16, out_channels=6).eval().requires_grad_(False)
    shifted = Recording(unet, lambda out: torch.cat([out[:, :3], out[:, 3:] + 0.5], dim=1))
    assert (sample(unet, learned) - sample(shifted, learned)).abs().max() > 0.05

    fixed = make_unet(resolution=16).eval().requires_grad_(False)
    for variance, v in (("fixed_small", -1.0), ("fixed_large", 1.0)):
        appended = Recording(fixed, lambda out, v=v: torch.cat([out, torch.full_like(out, v)], dim=1))
        difference = sample(fixed, {**DEFAULT_SCHEDULE, "variance_type": variance}) - sample(appended, learned)
        assert difference.abs().max() < 1e-5, variance


def test_the_output_is_the_last_sample_without_paste_back():
    """The last step's mean is the output as it stands: the known region is √ᾱ-noised at index 0 and denoised,
    not the original pasted back (a random UNet leaves it off by 0.019, float rounding would be 1e-7)."""
    unet = make_unet(resolution=16).eval().requires_grad_(False)
    originals, masks = batch(2, "half", size=16)
    result = run(RePaintSampler(5, 2, 50), unet, originals, masks, 20)
    keep = masks.expand_as(originals).bool()
    assert (result.images[keep] - originals[keep]).abs().max() > 1e-3


# A cell alone and inside a batch of other t_T (the float32 UNet sums in another order at another batch size):
# measured largest |difference| 7.7e-7 (t_T 20, 3, 12 on N = 20 with 5/2, 16 px, 1 and 2 threads); about ten
# times that. The slow test (t_T 10, 250, 50 with 10/10) is held to the same bound.
REPAINT_BATCH_ATOL = 1e-5


def check_batched_chains(unet, sampler, steps):
    originals, masks = batch(len(steps), "thick", size=16)
    seeds = [7 + i for i in range(len(steps))]
    calls = [sampler.unet_calls(s, DEFAULT_SCHEDULE) for s in steps]
    seen = []
    together = run(sampler, unet, originals, masks, steps, seeds=seeds, on_call=seen.append)
    assert together.unet_calls == calls and len(seen) == max(calls) and sum(seen) == sum(calls)
    for i, t_T in enumerate(steps):
        alone = run(sampler, unet, originals[i:i + 1], masks[i:i + 1], t_T, seeds=[seeds[i]]).images
        assert (together.images[i:i + 1] - alone).abs().max() < REPAINT_BATCH_ATOL, t_T


def test_chains_of_different_t_T_share_unet_calls_and_give_what_they_give_alone():
    """t_T 20, 3 and 12 with 5/2 on N = 20: 35, 3 and 22 calls, 35 invocations."""
    check_batched_chains(make_unet(resolution=16).eval().requires_grad_(False), RePaintSampler(5, 2, 20), [20, 3, 12])


@pytest.mark.slow
def test_the_papers_t_T_share_unet_calls_and_give_what_they_give_alone():
    """t_T 10, 50, 250 with 10/10 on N = 250: 2,410 UNet invocations serve all three chains (10 + 410 + 2,410)."""
    check_batched_chains(make_unet(resolution=16).eval().requires_grad_(False), make_sampler("repaint"),
                         [10, 250, 50])


def test_respacing_parameters_and_labels():
    assert make_sampler("repaint").respacing == 250 and RePaintSampler().respacing == 250
    assert make_sampler("repaint", respacing=None).respacing is None
    assert make_sampler("repaint", respacing=100, jump_length=5) == RePaintSampler(5, 10, 100)
    for name in ("repaint-diffusers", "ddim", "dpm-solver"):
        assert make_sampler(name).respacing is None and make_sampler(name, respacing=None).respacing is None
        with pytest.raises(SamplerError, match=f"^{name} walks only its own step grid: use respacing 'steps', "
                                               "not 250"):
            make_sampler(name, respacing=250)
    assert [respacing_label(r) for r in (250, None, 1000)] == ["250", "steps", "1000"]
    for r in (250, None, 7):
        assert parse_respacing(respacing_label(r)) == r
    for bad in ("0", "-5", "2.5", "step", ""):
        with pytest.raises(SamplerError, match="respacing must be a positive step count"):
            parse_respacing(bad)
    with pytest.raises(SamplerError, match="respacing must be a positive step count or None"):
        RePaintSampler(respacing=0)


def test_steps_beyond_the_respaced_grid_are_refused():
    sampler = make_sampler("repaint")
    with pytest.raises(SamplerError, match=r"^steps must lie in 1..250, got 251 \(t_T on the 250-step"):
        sampler.unet_calls(251, DEFAULT_SCHEDULE)
    with pytest.raises(SamplerError, match="steps must lie in 1..250, got 0"):
        sampler.unet_calls(0, DEFAULT_SCHEDULE)
    with pytest.raises(SamplerError, match="respacing must lie in 1..1000, got 1001"):
        RePaintSampler(respacing=1001).unet_calls(5, DEFAULT_SCHEDULE)
    assert sampler.unet_calls(250, DEFAULT_SCHEDULE) == 2410
    originals, masks = batch(1)
    learned = {**DEFAULT_SCHEDULE, "variance_type": "learned_range"}
    with pytest.raises(SamplerError, match="variance_type 'learned_range' but the UNet outputs 3 channels"):
        RePaintSampler(1, 1, 10).inpaint(OracleUNet(originals, DEFAULT_SCHEDULE), learned, originals, masks,
                                         make_generators([1], "cpu"), 2)


# ---- on CUDA (run with -m gpu; skipped without a GPU) ---------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_an_oracle_unet_gives_back_the_original_on_cuda(name):
    """As on the CPU, with the chains' state, generators and schedulers' tensors on the GPU (the same float32
    arithmetic; not yet run on a GPU when written: none was at hand)."""
    originals, masks = batch(3)
    oracle = oracle_for(name, originals).to("cuda")
    generators = make_generators([3, 4, 5], "cuda")
    result = WITH_JUMPS[name].inpaint(oracle, DEFAULT_SCHEDULE, originals, masks, generators, 10)
    assert result.images.device.type == "cpu"
    assert (result.images - originals).abs().max() < ORACLE_ATOL
