"""gensdk_vae: variational autoencoders for tables (`vae-table`, TVAE-style with a beta weight) and images
(`vae-image`, class-conditional convolutional), with anomaly scores (negative ELBO) and table imputation.

`model.py` holds the networks, `family.py` the model families, `plugin.py` the hook implementations the
`gensdk` entry point names, and `cli.py` the commands (`gensdk train vae`, `gensdk anomaly`, `gensdk impute`).
"""

from gensdk_vae.family import ImageVAEFamily, ImageVAEOptions, TableVAEFamily, TableVAEOptions

__all__ = ["ImageVAEFamily", "ImageVAEOptions", "TableVAEFamily", "TableVAEOptions"]
