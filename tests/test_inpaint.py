import pytest
import torch
from conftest import RESOLUTION, make_unet

from aaas_profile.inpaint import RePaintConfig, inpaint, unet_calls
from aaas_profile.masks import MaskSpec
from aaas_profile.models import DEFAULT_SCHEDULE

NO_JUMPS = RePaintConfig(jump_length=1, jump_n_sample=1)


@pytest.fixture(scope="module")
def unet():
    return make_unet().eval().requires_grad_(False)


# A cell's image alone and inside a batch is not the same computation (the float32 UNet sums in another order):
# measured largest |difference| 1.0e-5 over 3 draws x 6 cells x (10 steps with 5/2 jumps, 5 steps without), at 1
# and 2 threads; ten times that.
BATCH_ATOL = 1e-4


def batch(n: int, family: str = "thick"):
    torch.manual_seed(1)
    originals = torch.rand(n, 3, RESOLUTION, RESOLUTION)
    masks = torch.stack([MaskSpec(family, family).make(RESOLUTION, seed) for seed in range(n)])
    return originals, masks


def test_unet_calls_follow_repaint_resampling():
    # DESIGN.md: T = 250 with jumps 10/10 costs 2,410 UNet calls; 1/1 costs T.
    assert unet_calls(250, RePaintConfig()) == 2410
    assert unet_calls(250, NO_JUMPS) == 250
    # T + (jump points) · (r − 1) · j, jump points every j steps below T − j
    assert unet_calls(100, RePaintConfig(10, 10)) == 100 + 9 * 9 * 10
    assert unet_calls(20, RePaintConfig(5, 2)) == 20 + 3 * 1 * 5
    assert unet_calls(10, RePaintConfig(10, 10)) == 10  # no room for a jump


def test_counted_calls_match_the_schedule(unet):
    originals, masks = batch(2)
    config = RePaintConfig(jump_length=5, jump_n_sample=2)
    seen = []
    result = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [0, 1], 20, config, on_call=seen.append)
    assert result.unet_calls == [35, 35] and seen == [2] * 35 and unet_calls(20, config) == 35


def test_known_pixels_come_out_unchanged(unet):
    """RePaint's convention, 1 = keep: the kept pixels equal the original; the others were generated."""
    originals, masks = batch(3, "half")
    result = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [0, 1, 2], 10, NO_JUMPS)
    keep = masks.expand_as(originals).bool()
    assert torch.allclose(result.images[keep], originals[keep], atol=1e-5)
    # the random UNet's generated half is nothing like the original
    assert (result.images[~keep] - originals[~keep]).abs().mean() > 0.05
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_a_cells_output_does_not_depend_on_its_batch(unet):
    originals, masks = batch(3)
    together = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [7, 8, 9], 10, RePaintConfig(5, 2)).images
    alone = inpaint(unet, DEFAULT_SCHEDULE, originals[1:2], masks[1:2], [8], 10, RePaintConfig(5, 2)).images
    assert torch.allclose(together[1:2], alone, atol=BATCH_ATOL)
    reordered = inpaint(unet, DEFAULT_SCHEDULE, originals.flip(0), masks.flip(0), [9, 8, 7], 10,
                        RePaintConfig(5, 2)).images
    assert torch.allclose(reordered.flip(0), together, atol=BATCH_ATOL)


def test_seeds_decide_the_output(unet):
    originals, masks = batch(1)
    a = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [0], 10, NO_JUMPS).images
    b = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [0], 10, NO_JUMPS).images
    c = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [1], 10, NO_JUMPS).images
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.01


def test_bad_arguments(unet):
    originals, masks = batch(2)
    with pytest.raises(ValueError, match="one seed per image"):
        inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [0], 10)
    with pytest.raises(ValueError, match="steps must lie in 1..1000"):
        inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [0, 1], 1001)
    with pytest.raises(ValueError, match="jump_length"):
        RePaintConfig(jump_length=0)


def test_step_counts_share_unet_calls_and_give_the_images_they_give_alone(unet):
    """One batch of 5-, 10- and 20-step images: max(calls) UNet invocations, each image as if run alone."""
    originals, masks = batch(3)
    config = RePaintConfig(jump_length=5, jump_n_sample=2)
    seen = []
    mixed = inpaint(unet, DEFAULT_SCHEDULE, originals, masks, [4, 5, 6], [20, 5, 10], config, on_call=seen.append)
    assert mixed.unet_calls == [unet_calls(20, config), 5, unet_calls(10, config)] == [35, 5, 15]
    assert len(seen) == 35 and sum(seen) == 35 + 5 + 15  # images per call shrink as short chains finish
    for i, steps in enumerate([20, 5, 10]):
        alone = inpaint(unet, DEFAULT_SCHEDULE, originals[i:i + 1], masks[i:i + 1], [4 + i], steps, config)
        assert torch.allclose(mixed.images[i:i + 1], alone.images, atol=BATCH_ATOL), steps
