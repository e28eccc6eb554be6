"""gensdk_gan: generative adversarial networks for tables (`gan-table`, CTGAN-style: conditional vector with
training-by-sampling, PacGAN, WGAN-GP) and images (`gan-image`, class-conditional DCGAN).

`model.py` holds the networks, `family.py` the model families, `plugin.py` the hook implementations the
`gensdk` entry point names, `cli.py` the commands (`gensdk train gan`, `gensdk augment`), and `dp.py` the
differentially private training (Opacus) the GAN and VAE families share.
"""

from gensdk_gan.family import ImageGANFamily, ImageGANOptions, TableGANFamily, TableGANOptions

__all__ = ["ImageGANFamily", "ImageGANOptions", "TableGANFamily", "TableGANOptions"]
