"""The VAE networks, top to bottom: a table VAE (TVAE-style) and a class-conditional convolutional VAE.

A VAE (Kingma & Welling 2014) learns an encoder q(z|x) and a decoder p(x|z) by maximising the evidence lower
bound, ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)). Here the loss is the negative ELBO with a weight beta on
the KL term (Higgins et al. 2017): beta < 1 favours faithful reconstructions (sharper samples, a latent space
with holes), beta > 1 a smoother latent space (blurrier samples, better coverage of the prior).

The negative ELBO of one row or image is also its anomaly score: rows the model explains badly cost more
bits. Scores use beta = 1, the true bound.

Tables (Xu et al. 2019, TVAE): the row is CTGAN's mode-normalised encoding (gensdk.tabular_transform). The
decoder's tanh scalars get a Gaussian likelihood with a learned width sigma per column, the one-hot blocks a
categorical likelihood (cross-entropy).

Images: strided convolutions down to a (2w, H/4, W/4) map in the encoder, transposed convolutions up in the
decoder, the class given to both as a one-hot (planes for the encoder, appended to z for the decoder), a
Bernoulli likelihood on pixel intensities in [0, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gensdk.tabular_transform import Span


def mlp(d_in: int, hidden: Sequence[int]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU()]
        d_in = h
    return nn.Sequential(*layers), d_in


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + sigma * eps: the sample is a differentiable function of (mu, logvar)."""
    eps = torch.randn_like(mu) if noise is None else noise
    return mu + eps * torch.exp(0.5 * logvar)


# -- tables ---------------------------------------------------------------------------------------------------


class NoiseWidth(nn.Module):
    """Width of the Gaussian around each tanh scalar; learned, and kept in [0.01, 1] (TVAE) so that the
    likelihood can neither collapse onto the training values nor give up on them. A module of its own, whose
    output is the width repeated per row, so that DP training (Opacus) sees it as a layer with per-row
    gradients like any other."""

    def __init__(self, data_dim: int):
        super().__init__()
        self.sigma = nn.Parameter(torch.full((data_dim,), 0.1))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.sigma.expand(rows.shape[0], -1)


class TableVAE(nn.Module):
    # Models saved before the width became a module of its own.
    renamed_tensors = {"sigma": "width.sigma"}

    def __init__(self, data_dim: int, cond_dim: int, latent_dim: int = 128, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.encoder, width = mlp(data_dim, hidden)
        self.to_mu = nn.Linear(width, latent_dim)
        self.to_logvar = nn.Linear(width, latent_dim)
        self.decoder, width = mlp(latent_dim, list(reversed(hidden)))
        self.to_row = nn.Linear(width, data_dim)
        self.width = NoiseWidth(data_dim)
        # Where the training rows of each category sit in latent space (mean and spread of their posterior
        # samples), one row per conditional-vector entry: sampling z there steers generation towards that
        # category, so a conditioned request needs far fewer rejected rows than sampling from the prior.
        self.register_buffer("cond_mean", torch.zeros(cond_dim, latent_dim))
        self.register_buffer("cond_std", torch.ones(cond_dim, latent_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_row(self.decoder(z))

    def forward(self, shown: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One training pass: encode `shown` (the rows, some cells hidden), decode a posterior sample drawn with
        `noise`; (raw row, mu, logvar, per-row sigma), what `TableVAELoss` scores."""
        mu, logvar = self.encode(shown)
        return self.decode(reparameterise(mu, logvar, noise)), mu, logvar, self.width(shown)

    @property
    def sigma(self) -> torch.Tensor:
        return self.width.sigma

    def clamp_sigma(self) -> None:
        with torch.no_grad():
            self.width.sigma.clamp_(0.01, 1.0)


def table_nll(raw: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, spans: Sequence[Span], exclude_missing: bool = False) -> torch.Tensor:
    """-log p(x | z) per row: Gaussian on the tanh scalars, categorical on the one-hot blocks. `sigma`: one
    width per column of the row, or one row of widths per row."""
    nll = raw.new_zeros(raw.shape[0])
    for span in spans:
        if span.activation == "tanh":
            s = sigma[..., span.start]
            err = x[:, span.start] - torch.tanh(raw[:, span.start])
            nll = nll + err.pow(2) / (2 * s * s) + torch.log(s) + 0.5 * math.log(2 * math.pi)
        else:
            target = x[:, span.start : span.stop].argmax(dim=1)
            nll = nll + F.cross_entropy(raw[:, span.start : span.stop], target, reduction="none")
    return nll


class TableVAELoss(nn.Module):
    """The training loss as a criterion, (outputs of TableVAE.forward, rows) -> negative beta-ELBO, reduced by
    `reduction` ("mean", "sum" or "none": per row, which DP training clips row by row)."""

    def __init__(self, spans: Sequence[Span], beta: float, reduction: str = "mean"):
        super().__init__()
        self.spans, self.beta, self.reduction = list(spans), beta, reduction

    def forward(self, outputs: tuple[torch.Tensor, ...], rows: torch.Tensor) -> torch.Tensor:
        raw, mu, logvar, sigma = outputs
        return reduce(table_nll(raw, rows, sigma, self.spans) + self.beta * kl_divergence(mu, logvar), self.reduction)


def reduce(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_row if reduction == "none" else per_row.sum() if reduction == "sum" else per_row.mean()


# -- images ---------------------------------------------------------------------------------------------------


class ImageVAE(nn.Module):
    def __init__(self, n_classes: int, channels: int, height: int, width: int, latent_dim: int = 16, base: int = 32):
        super().__init__()
        self.shape = (2 * base, height // 4, width // 4)
        flat = 2 * base * (height // 4) * (width // 4)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels + n_classes, base, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(base, 2 * base, 4, 2, 1), nn.ReLU(), nn.Flatten(),
        )
        self.to_stats = nn.Linear(flat, 2 * latent_dim)  # mu and logvar in one matmul
        self.project = nn.Sequential(nn.Linear(latent_dim + n_classes, flat), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * base, base, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(base, channels, 4, 2, 1),
        )
        self.latent_dim = latent_dim

    def encode(self, images: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        planes = onehot[:, :, None, None].expand(-1, -1, images.shape[2], images.shape[3])
        mu, logvar = self.to_stats(self.encoder(torch.cat([images, planes], dim=1))).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Pixel logits; sigmoid of them is the mean image."""
        return self.decoder(self.project(torch.cat([z, onehot], dim=1)).view(-1, *self.shape))

    def forward(self, images: torch.Tensor, onehot: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One training pass: (pixel logits of a posterior sample drawn with `noise`, mu, logvar)."""
        mu, logvar = self.encode(images, onehot)
        return self.decode(reparameterise(mu, logvar, noise), onehot), mu, logvar


class ImageVAELoss(nn.Module):
    """(outputs of ImageVAE.forward, images) -> negative beta-ELBO, reduced like TableVAELoss."""

    def __init__(self, beta: float, reduction: str = "mean"):
        super().__init__()
        self.beta, self.reduction = beta, reduction

    def forward(self, outputs: tuple[torch.Tensor, ...], images: torch.Tensor) -> torch.Tensor:
        logits, mu, logvar = outputs
        return reduce(image_nll(logits, images) + self.beta * kl_divergence(mu, logvar), self.reduction)


def image_nll(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """-log p(x | z) per image under a Bernoulli per pixel (intensities in [0, 1] as soft targets)."""
    return F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(dim=1)
