"""aaas-profile: quality-vs-steps profiles of diffusion inpainting, for planning AIGC services at the edge.

The commands as functions: ``import aaas_profile.api as ap`` → ``ap.sweep``, ``ap.fit``, ``ap.simulate``,
``ap.report``, ``ap.load_scores`` and ``ap.load_fit`` (DataFrames), ``ap.recommendations`` (docs/python-api.md).
They live in ``api`` rather than here because ``aaas_profile.sweep``, ``.fit`` and ``.report`` are the stage
modules of those names.

Stages (one module each, usable without the CLI): ``masks`` → ``images`` → ``inpaint`` → ``metrics`` →
``sweep`` (writes a run folder, see ``runs``) → ``fit`` / ``fitrun`` → ``report``; ``sim/`` the simulator.
``models`` resolves a model name or folder to a UNet.
"""

__version__ = "0.1.0"
