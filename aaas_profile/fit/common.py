"""What every part of the fit shares: the x axes a curve can be fitted against, and the error."""

from __future__ import annotations

from aaas_profile.errors import UserError

X_CHOICES = ("steps", "unet_calls", "wall_s")
X_UNITS = {"steps": "denoising steps", "unet_calls": "UNet calls per image", "wall_s": "seconds per image"}


class FitError(UserError, ValueError):
    """Scores that cannot be fitted as they are; the message is one line."""
