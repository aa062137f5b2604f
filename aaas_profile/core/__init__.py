"""The torch-free core: what the fit, the report and the simulator share (docs/design.md, "Layers").

- :mod:`~aaas_profile.core.formulas`: the four-parameter curve, the task-step grid, the paper's runtime, the
  reward of a served task and the penalty of a crash;
- :mod:`~aaas_profile.core.curve_keys`: the curve key (what makes two curves different), the settings that tell
  curves apart and their labels;
- :mod:`~aaas_profile.core.acceptance`: the rules a fitted curve and a runtime model must meet before the
  simulator takes them.

The core imports numpy and the standard library only, and nothing from the rest of the project apart from
itself: the simulator and the report use it without loading torch, piq, diffusers, scipy or pandas
(``tests/test_imports.py`` holds it to that).
"""
