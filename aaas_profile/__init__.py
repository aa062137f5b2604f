"""aaas-profile: quality-vs-steps profiles of diffusion inpainting, for planning AIGC services at the edge.

Stages (one module each, usable without the CLI): ``masks`` → ``images`` → ``inpaint`` → ``metrics`` →
``sweep`` (writes a run folder, see ``runs``). ``models`` resolves a model name or folder to a UNet.
"""

__version__ = "0.1.0"
