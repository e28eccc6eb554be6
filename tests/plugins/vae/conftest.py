"""Fixtures of the VAE tests: those shared with the GAN tests, from tests/plugins/gan/tiny_models.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gan"))
from tiny_models import *  # noqa: E402,F401,F403
