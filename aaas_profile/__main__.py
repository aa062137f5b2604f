"""``python -m aaas_profile`` runs the command line, as ``aaas-profile`` does."""

from aaas_profile.cli import main

main()
