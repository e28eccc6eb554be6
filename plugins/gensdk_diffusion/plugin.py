"""Hook implementations of gensdk_diffusion; named by the `gensdk` entry point `diffusion`."""

from __future__ import annotations
