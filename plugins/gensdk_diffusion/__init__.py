"""gensdk_diffusion: local diffusers pipelines (unconditional and text-to-image) and small DDPMs gensdk trains.

`model.py` (the family: requests, generation through the policies' processors, identity, save/load),
`loading.py` (reading a diffusers directory, refusing pickle weights and code shipped with a model),
`sampling.py` (gensdk's sampler for UNet2DModel pipelines and the text-to-image call), `train.py` (a small
DDPM trained on images), `evaluate.py` (a digit classifier that judges generated digits), `plugin.py` (the
hooks the `gensdk` entry point `diffusion` names) and `cli.py` (`gensdk train diffusion`). Nothing here imports
torch or diffusers until it is used.
"""

from gensdk_diffusion.model import DiffusionFamily, DiffusionParams

__all__ = ["DiffusionFamily", "DiffusionParams"]
