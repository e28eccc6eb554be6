"""The GAN model families: `gan-table` (conditional table GAN) and `gan-image` (class-conditional DCGAN).

The networks are in model.py; fitting, conditioned generation, diagnostics and save/load come from the shared
bases (gensdk.tabular_transform.NeuralTableFamily, gensdk.images.NeuralImageFamily). What is here is the GAN
training step of each.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from gensdk.images import NeuralImageFamily, NeuralImageOptions
from gensdk.tabular_transform import NeuralTableFamily, NeuralTableOptions

__all__ = ["ImageGANFamily", "ImageGANOptions", "TableGANFamily", "TableGANOptions"]


class TableGANOptions(NeuralTableOptions):
    noise_dim: int = Field(128, ge=1, le=4096)
    generator_dims: list[int] = Field(default_factory=lambda: [256, 256])
    critic_dims: list[int] = Field(default_factory=lambda: [256, 256])
    # Rows the critic judges together (PacGAN); the batch size must be a multiple of it.
    pac: int = Field(10, ge=1, le=64)
    critic_steps: int = Field(1, ge=1, le=20)
    weight_decay: float = Field(1e-6, ge=0)


class TableGANFamily(NeuralTableFamily):
    id: ClassVar[str] = "gan-table"
    version: ClassVar[str] = "1"
    Options: ClassVar[type[TableGANOptions]] = TableGANOptions

    def _build(self) -> Any:
        from torch import nn

        from gensdk.errors import ConfigError
        from gensdk_gan.model import TableCritic, TableGenerator

        opts = self.options
        if opts.batch_size % opts.pac:
            raise ConfigError(f"batch_size {opts.batch_size} must be a multiple of pac {opts.pac}")
        width, cond = self.transform.width, self.cond.width
        return nn.ModuleDict({
            "generator": TableGenerator(opts.noise_dim, cond, width, opts.generator_dims),
            "critic": TableCritic(width + cond, opts.critic_dims, opts.pac),
        })

    def _train_epoch(self, x: Any, rng: np.random.Generator) -> dict[str, float]:
        import torch

        from gensdk_gan.model import activate, condition_loss, gradient_penalty

        opts, gen, critic = self.options, self.net["generator"], self.net["critic"]
        if getattr(self, "_optims", None) is None:  # Adam with beta1 0.5: CTGAN's (and DCGAN's) setting for GANs
            self._optims = [torch.optim.Adam(m.parameters(), lr=opts.learning_rate, betas=(0.5, 0.9), weight_decay=opts.weight_decay)
                            for m in (gen, critic)]
        opt_g, opt_c = self._optims
        batch = opts.batch_size
        steps = max(len(x) // batch, 1)
        spans = self.transform.spans
        for _ in range(steps):
            for _ in range(opts.critic_steps):
                cond, _, rows = self._cond_batch(batch, rng)
                fake = activate(gen(torch.randn(batch, opts.noise_dim, device=x.device), cond), spans)
                real_in, fake_in = torch.cat([x[rows], cond], 1), torch.cat([fake, cond], 1)
                loss_c = critic(fake_in).mean() - critic(real_in).mean() + gradient_penalty(critic, real_in, fake_in)
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
            cond, (column, category), _ = self._cond_batch(batch, rng, split_entry=True)
            raw = gen(torch.randn(batch, opts.noise_dim, device=x.device), cond)
            fake_in = torch.cat([activate(raw, spans), cond], 1)
            loss_g = -critic(fake_in).mean() + condition_loss(raw, self._cond_spans, column, category)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        return {"critic": loss_c.item(), "generator": loss_g.item()}

    def _cond_batch(self, batch: int, rng: np.random.Generator, split_entry: bool = False) -> tuple[Any, Any, Any]:
        """Conditional vectors from training-by-sampling, on the training device."""
        import torch

        device = next(self.net.parameters()).device
        cond, entry, rows = self.cond.sample_train(batch, rng)
        cond_t = torch.as_tensor(cond, device=device)
        if not split_entry:
            return cond_t, None, torch.as_tensor(rows, device=device)
        column = np.searchsorted(self.cond.offsets, entry, side="right") - 1
        category = entry - self.cond.offsets[column]
        return cond_t, (torch.as_tensor(column, device=device), torch.as_tensor(category, device=device)), None

    @property
    def _cond_spans(self) -> list[tuple[Any, int]]:
        return [(span, j) for j, (_, span) in enumerate(self.cond.columns)]

    def _validation_loss(self, x: Any) -> float:
        """Distance between the held-out rows' and generated rows' encoded marginals (mean total variation over
        the softmax blocks and 20-bin histograms of the tanh scalars): a cheap fidelity score for a GAN,
        whose losses say little about sample quality."""
        import torch

        fake = torch.as_tensor(self.transform.encode(self._sample_frame(min(len(x), 2000), 0, None), np.random.default_rng(0)))
        return marginal_distance(x.cpu(), fake, self.transform.spans)

    def _decode_raw(self, n: int, entry: int | None, gen: Any) -> Any:
        import torch

        from gensdk_gan.model import batch_statistics

        # Batch statistics need a batch: fewer rows than a training batch are padded to one (and dropped).
        rows = max(n, self.options.batch_size)
        if entry is None:
            cond = self.cond.sample_original(rows, gen)
        else:
            cond = torch.zeros(rows, self.cond.width)
            cond[:, entry] = 1.0
        noise = torch.randn(rows, self.options.noise_dim, generator=gen)
        generator = self.net["generator"]
        device = next(generator.parameters()).device
        with batch_statistics(generator):
            return generator(noise.to(device), cond.to(device))[:n].cpu()


def marginal_distance(real: Any, fake: Any, spans: list[Any]) -> float:
    import torch

    distances = []
    for span in spans:
        r, f = real[:, span.start : span.stop], fake[:, span.start : span.stop]
        if span.activation == "tanh":
            r = torch.nn.functional.one_hot(((r[:, 0] + 1) * 10).long().clamp(0, 19), 20).float()
            f = torch.nn.functional.one_hot(((f[:, 0] + 1) * 10).long().clamp(0, 19), 20).float()
        distances.append(0.5 * float((r.mean(0) - f.mean(0)).abs().sum()))
    return float(np.mean(distances))


class ImageGANOptions(NeuralImageOptions):
    noise_dim: int = Field(64, ge=1, le=4096)
    width: int = Field(64, ge=4, le=1024)  # channels of the first feature map; doubled once
    learning_rate: float = Field(2e-4, gt=0, le=1)
    epochs: int = Field(200, ge=1, le=100_000)


class ImageGANFamily(NeuralImageFamily):
    id: ClassVar[str] = "gan-image"
    version: ClassVar[str] = "1"
    Options: ClassVar[type[ImageGANOptions]] = ImageGANOptions

    def _build(self) -> Any:
        from torch import nn

        from gensdk_gan.model import ImageCritic, ImageGenerator

        c, h, w = self.image_shape
        k, opts = len(self.classes), self.options
        return nn.ModuleDict({"generator": ImageGenerator(opts.noise_dim, k, c, h, w, opts.width),
                              "critic": ImageCritic(k, c, h, w, opts.width)})

    def _train_epoch(self, images: Any, onehot: Any, gen: Any) -> dict[str, float]:
        import torch
        from torch.nn import functional as F

        opts, g, d = self.options, self.net["generator"], self.net["critic"]
        if getattr(self, "_optims", None) is None:
            self._optims = [torch.optim.Adam(m.parameters(), lr=opts.learning_rate, betas=(0.5, 0.999)) for m in (g, d)]
        opt_g, opt_d = self._optims
        order = torch.randperm(len(images), generator=gen).to(images.device)
        for start in range(0, len(images) - opts.batch_size + 1, opts.batch_size):
            idx = order[start : start + opts.batch_size]
            real, labels = images[idx], onehot[idx]
            noise = torch.randn(len(idx), opts.noise_dim, device=images.device)
            fake = g(noise, labels)
            # One-sided label smoothing (real = 0.9): a critic that is never certain gives the generator
            # gradients for longer (Salimans et al. 2016).
            real_logit, fake_logit = d(real, labels), d(fake.detach(), labels)
            loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.full_like(real_logit, 0.9))
                      + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            fake_logit = d(fake, labels)  # non-saturating generator loss: -log D(G(z))
            loss_g = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        return {"critic": loss_d.item(), "generator": loss_g.item()}

    def _sample_pixels(self, onehot: Any, gen: Any) -> Any:
        import torch

        generator = self.net["generator"]
        device = next(generator.parameters()).device
        noise = torch.randn(onehot.shape[0], self.options.noise_dim, generator=gen)
        return generator(noise.to(device), onehot.to(device))
