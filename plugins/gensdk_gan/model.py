"""The GAN networks, top to bottom: a conditional table GAN (CTGAN-style) and a class-conditional DCGAN.

Tables (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN"), with the three things known to fight
mode collapse on tables:

* a *conditional vector* with training-by-sampling (gensdk.tabular_transform.ConditionSampler): every batch
  asks the generator for rows with a given category, rare ones included, and the critic sees real rows with
  that category, so the generator cannot settle on the majority categories;
* *PacGAN* packing (Lin et al. 2018): the critic judges `pac` rows at once, so a generator that produces the
  same few rows over and over is easy to spot from a pack;
* *WGAN-GP* (Gulrajani et al. 2017): a critic with a gradient penalty gives useful gradients even when the
  real and generated distributions barely overlap, where the original GAN loss saturates.

and, when the table declares a categorical `target`, an *auxiliary classifier* (CTAB-GAN, Zhao et al. 2021): a
classifier of the target from the other columns, trained on real rows, whose cross-entropy on generated rows
joins the generator's loss. The critic judges whole rows and gives the label-versus-features relation no more
weight than any other; a model trained on synthetic rows lives or dies by exactly that relation.

Under differential privacy (gensdk_gan.dp) the critic is trained with per-row clipped gradients, which rules out
the gradient penalty and packing: `TableCritic` is then used with `pac=1` and the logistic GAN loss.

Images (Radford et al. 2016, DCGAN; Mirza & Osindero 2014, conditional GAN): transposed convolutions up from a
projected noise vector, strided convolutions down in the critic, the class label given to both (as a one-hot
appended to the noise, as one-hot planes appended to the image channels).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gensdk.tabular_transform import Span

# -- tables ---------------------------------------------------------------------------------------------------


class Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, concatenated to its input: each layer sees everything below it, which keeps
    the noise and the conditional vector reachable from the output (CTGAN's generator block)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class TableGenerator(nn.Module):
    """(noise, conditional vector) -> raw encoded row: pre-tanh scalars and softmax logits (see `activate`)."""

    def __init__(self, noise_dim: int, cond_dim: int, data_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        blocks, width = [], noise_dim + cond_dim
        for h in hidden:
            blocks.append(Residual(width, h))
            width += h
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width, data_dim)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(torch.cat([noise, cond], dim=1)))


class TableCritic(nn.Module):
    """Scores packs of `pac` (row, conditional vector) pairs; no sigmoid: a WGAN critic outputs a real number."""

    def __init__(self, row_dim: int, hidden: Sequence[int] = (256, 256), pac: int = 10):
        super().__init__()
        self.pac = pac
        layers: list[nn.Module] = []
        width = row_dim * pac
        for h in hidden:
            # Dropout in the critic (CTGAN): one more obstacle to memorising individual training rows.
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(rows.reshape(-1, self.pac * rows.shape[1]))


class TargetClassifier(nn.Module):
    """Encoded row with the target's one-hot block left out -> logits of the target's categories."""

    def __init__(self, row_dim: int, target: Span, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.start, self.stop = target.start, target.stop
        layers: list[nn.Module] = []
        width = row_dim - target.width
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            width = h
        layers.append(nn.Linear(width, target.width))
        self.net = nn.Sequential(*layers)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([rows[:, : self.start], rows[:, self.stop :]], dim=1))

    def labels(self, rows: torch.Tensor) -> torch.Tensor:
        return rows[:, self.start : self.stop].argmax(dim=1)


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with the batch's own statistics while sampling, as in training, and leave
    their running averages untouched. A GAN generator's running averages lag behind its fast-moving weights;
    sampling with them (eval mode) gives rows the critic never judged. CTGAN samples this way too."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (training, momentum, tracked) in zip(norms, saved):
            m.train(training)
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def activate(raw: torch.Tensor, spans: Sequence[Span], tau: float = 0.2) -> torch.Tensor:
    """Training-time output layer: tanh for the mode-normalised scalars, Gumbel-softmax for one-hot blocks.
    Gumbel-softmax at a low temperature (0.2, CTGAN's) gives nearly one-hot rows the critic cannot tell from
    real one-hots by their softness alone, while gradients still flow to the logits."""
    parts = []
    for span in spans:
        block = raw[:, span.start : span.stop]
        parts.append(torch.tanh(block) if span.activation == "tanh" else F.gumbel_softmax(block, tau=tau))
    return torch.cat(parts, dim=1)


def gradient_penalty(critic: TableCritic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP: (||grad critic(x_hat)|| - 1)^2 on random interpolates, one mixing weight per pack."""
    pac = critic.pac
    mix = torch.rand(real.shape[0] // pac, 1, 1, device=real.device).repeat(1, pac, real.shape[1]).view(-1, real.shape[1])
    between = (mix * real + (1 - mix) * fake).requires_grad_(True)
    grads = torch.autograd.grad(critic(between).sum(), between, create_graph=True)[0]
    norms = grads.view(-1, pac * real.shape[1]).norm(2, dim=1)
    return weight * ((norms - 1) ** 2).mean()


def condition_loss(raw: torch.Tensor, cond_columns: Sequence[tuple[Span, int]], column: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the generator's logits of the conditioned column and the asked-for category: the
    term that makes the generator honour the conditional vector (the critic alone would let it ignore it)."""
    total = raw.new_zeros(())
    for j, (span, _) in enumerate(cond_columns):
        rows = column == j
        if rows.any():
            total = total + F.cross_entropy(raw[rows, span.start : span.stop], category[rows], reduction="sum")
    return total / raw.shape[0]


# -- images ---------------------------------------------------------------------------------------------------


class ImageGenerator(nn.Module):
    """(noise, one-hot class) -> image in [0, 1]: project to a (2w, H/4, W/4) map, then two 2x upsamplings."""

    def __init__(self, noise_dim: int, n_classes: int, channels: int, height: int, width: int, base: int = 64):
        super().__init__()
        self.shape = (2 * base, height // 4, width // 4)
        self.project = nn.Sequential(
            nn.Linear(noise_dim + n_classes, 2 * base * (height // 4) * (width // 4)),
            nn.BatchNorm1d(2 * base * (height // 4) * (width // 4)), nn.ReLU(),
        )
        self.up = nn.Sequential(
            # kernel 4, stride 2, padding 1: exactly doubles the size, without the checkerboard of kernel 3
            nn.ConvTranspose2d(2 * base, base, 4, 2, 1), nn.BatchNorm2d(base), nn.ReLU(),
            nn.ConvTranspose2d(base, channels, 4, 2, 1),
        )

    def forward(self, noise: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        x = self.project(torch.cat([noise, onehot], dim=1)).view(-1, *self.shape)
        return torch.sigmoid(self.up(x))


class ImageCritic(nn.Module):
    """(image, one-hot class) -> logit "real and of this class"; the class enters as constant planes.

    `norm="group"` for DP training: BatchNorm mixes the rows of a batch, so one image's gradient would depend
    on the others and could not be clipped on its own; GroupNorm normalises each image by itself."""

    def __init__(self, n_classes: int, channels: int, height: int, width: int, base: int = 64,
                 norm: Literal["batch", "group"] = "batch"):
        super().__init__()
        wide = 2 * base
        self.down = nn.Sequential(
            nn.Conv2d(channels + n_classes, base, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(base, wide, 4, 2, 1),
            nn.BatchNorm2d(wide) if norm == "batch" else nn.GroupNorm(math.gcd(8, wide), wide), nn.LeakyReLU(0.2),
        )
        self.out = nn.Linear(2 * base * (height // 4) * (width // 4), 1)

    def forward(self, images: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        planes = onehot[:, :, None, None].expand(-1, -1, images.shape[2], images.shape[3])
        return self.out(self.down(torch.cat([images, planes], dim=1)).flatten(1))
