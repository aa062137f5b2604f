"""``python -m aaas_profile.cli`` (and ``torchrun -m aaas_profile.cli``) runs the command line."""

from aaas_profile.cli import main

main()
