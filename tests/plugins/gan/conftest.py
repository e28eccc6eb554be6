"""Fixtures of the GAN tests: those shared with the VAE tests, from tiny_models.py beside this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import *  # noqa: E402,F401,F403
