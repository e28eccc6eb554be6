"""The GAN model families: `gan-table` (conditional table GAN) and `gan-image` (class-conditional DCGAN).

The networks are in model.py; fitting, conditioned generation, diagnostics and save/load come from the shared
bases (gensdk.neural_table.NeuralTableFamily, gensdk.images.NeuralImageFamily). What is here is the GAN
training step of each.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from gensdk.images import NeuralImageFamily, NeuralImageOptions
from gensdk.neural_table import NeuralTableFamily, NeuralTableOptions
from gensdk_gan.dp import PrivacyOptions, PrivateFamily

__all__ = ["ImageGANFamily", "ImageGANOptions", "TableGANFamily", "TableGANOptions"]


class TableGANOptions(NeuralTableOptions, PrivacyOptions):
    noise_dim: int = Field(128, ge=1, le=4096)
    generator_dims: list[int] = Field(default_factory=lambda: [256, 256])
    critic_dims: list[int] = Field(default_factory=lambda: [256, 256])  # [64] under DP unless given
    # Rows the critic judges together (PacGAN); the batch size must be a multiple of it. 1 under DP.
    pac: int = Field(10, ge=1, le=64)
    critic_steps: int = Field(1, ge=1, le=20)
    weight_decay: float = Field(1e-6, ge=0)
    # Weight of the auxiliary target classifier's loss in the generator's (used when a categorical `target`
    # is declared; 0 switches it off; 0 under DP, where the classifier would read real rows unprotected).
    classifier_weight: float = Field(1.0, ge=0, le=100)
    # Share of the conditional vectors that ask for a category of the declared target (the rest: CTGAN's
    # uniformly chosen column); with a share, unconditional rows are generated label first. 0: CTGAN's way.
    # 0.5 raised ML efficacy on Adult from 0.80 to 0.87 AUC (docs/gan_vae.md, Benchmarks).
    target_share: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _what_dp_changes(cls, data: Any) -> Any:
        """DP training clips each row's gradient: packs would mix rows (pac 1), and the auxiliary classifier
        reads real rows outside the accountant (weight 0); asking for either with dp_epsilon is an error. The
        critic is one layer of 64 unless given: DP-SGD's noise grows with the critic's parameter count (on
        Adult at ε = 3, 10 epochs: ML efficacy 0.63-0.71 AUC over two seeds, against 0.57 with [256, 256],
        0.33 with [128, 128] and 0.45 with [32])."""
        if not isinstance(data, dict) or data.get("dp_epsilon") is None:
            return data
        for name, allowed in (("pac", 1), ("classifier_weight", 0)):
            if data.get(name, allowed) != allowed:
                raise ValueError(f"{name} must be {allowed} with dp_epsilon (got {data[name]}); see docs/privacy.md")
        return {"critic_dims": [64], **data, "pac": 1, "classifier_weight": 0.0}


class TableGANFamily(PrivateFamily, NeuralTableFamily):
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

    # -- training -------------------------------------------------------------------------------------------

    def _train_epoch(self, x: Any, rng: np.random.Generator) -> dict[str, float]:
        if self.options.dp_epsilon is not None:
            return self._train_epoch_private(x, rng)
        if getattr(self, "_optims", None) is None:
            self._optims = [self._adam(self.net[name]) for name in ("generator", "critic")]
            self._classifier = self._target_classifier(x)
        opts = self.options
        for _ in range(max(len(x) // opts.batch_size, 1)):
            for _ in range(opts.critic_steps):
                loss_c = self._critic_step(x, rng)
            cond, entry = self._cond_batch(opts.batch_size, rng)
            loss_g = self._generator_step(cond, entry, wasserstein=True)
            if self._classifier is not None:
                loss_t = self._classifier_step(x, rng)
        losses = {"critic": loss_c, "generator": loss_g}
        return {**losses, "classifier": loss_t} if self._classifier is not None else losses

    def _adam(self, module: Any) -> Any:
        import torch

        # Adam with beta1 0.5: CTGAN's (and DCGAN's) setting for GANs
        opts = self.options
        return torch.optim.Adam(module.parameters(), lr=opts.learning_rate, betas=(0.5, 0.9), weight_decay=opts.weight_decay)

    def _critic_step(self, x: Any, rng: np.random.Generator) -> float:
        """WGAN-GP on packs: real rows picked by training-by-sampling, generated rows with the same conditions."""
        import torch

        from gensdk_gan.model import activate, gradient_penalty

        cond, _, rows = self.cond.sample_train(self.options.batch_size, rng)
        cond = torch.as_tensor(cond, device=x.device)
        with torch.no_grad():
            fake = activate(self.net["generator"](self._noise(len(cond), x.device), cond), self.transform.spans)
        critic = self.net["critic"]
        real_in, fake_in = torch.cat([x[torch.as_tensor(rows, device=x.device)], cond], 1), torch.cat([fake, cond], 1)
        loss = critic(fake_in).mean() - critic(real_in).mean() + gradient_penalty(critic, real_in, fake_in)
        self._optims[1].zero_grad(set_to_none=True)
        loss.backward()
        self._optims[1].step()
        return loss.item()

    def _generator_step(self, cond: Any, entry: np.ndarray, wasserstein: bool) -> float:
        """Fool the critic (Wasserstein, or the logistic loss under DP), honour the conditional vector, and agree
        with the auxiliary classifier on each generated row's target."""
        import torch
        from torch.nn import functional as F

        from gensdk_gan.model import activate, condition_loss

        raw = self.net["generator"](self._noise(len(cond), cond.device), cond)
        fake = activate(raw, self.transform.spans)
        scores = self.net["critic"](torch.cat([fake, cond], 1))
        adversarial = -scores.mean() if wasserstein else F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
        column, category = self._entry_parts(entry, cond.device)
        loss = adversarial + condition_loss(raw, self._cond_spans, column, category)
        if getattr(self, "_classifier", None) is not None:
            classifier = self._classifier[0]
            loss = loss + self.options.classifier_weight * F.cross_entropy(classifier(fake), classifier.labels(fake))
        self._optims[0].zero_grad(set_to_none=True)
        loss.backward()
        self._optims[0].step()
        return loss.item()

    def _target_classifier(self, x: Any) -> tuple[Any, Any] | None:
        """(classifier, its optimiser) when a categorical target is declared and classifier_weight > 0."""
        from gensdk_gan.model import TargetClassifier

        target = self.options.target
        if not self.options.classifier_weight or target is None or not any(c.name == target for c, _ in self.cond.columns):
            return None
        classifier = TargetClassifier(self.transform.width, self.transform.span_of(target), self.options.critic_dims).to(x.device)
        return classifier, self._adam(classifier)

    def _classifier_step(self, x: Any, rng: np.random.Generator) -> float:
        """Cross-entropy of the target on real rows drawn uniformly (training-by-sampling's picks would skew the
        classifier's idea of how common each target category is)."""
        import torch
        from torch.nn import functional as F

        classifier, optim = self._classifier
        real = x[torch.as_tensor(rng.integers(len(x), size=self.options.batch_size), device=x.device)]
        loss = F.cross_entropy(classifier(real), classifier.labels(real))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss.item()

    def _train_epoch_private(self, x: Any, rng: np.random.Generator) -> dict[str, float]:
        """DP-SGD on the critic (gensdk_gan.dp): Poisson-sampled real rows, each with a condition of its own
        categories; generated rows conditioned on category frequencies; logistic loss on one batch of both."""
        import torch

        from gensdk_gan.dp import PrivateTraining
        from gensdk_gan.model import activate

        opts, critic = self.options, self.net["critic"]
        if self._private is None:
            self._optims, self._classifier = [self._adam(self.net["generator"]), None], None
            self._private = PrivateTraining(critic, self._adam(critic), torch.nn.BCEWithLogitsLoss(), rows=len(x),
                                            batch_size=opts.batch_size, epochs=opts.epochs, options=opts)
        private, loss_g = self._private, float("nan")
        for step, rows in enumerate(private.batches(), 1):
            real = x[rows.to(x.device)]
            real_cond = self.cond.from_rows(real, rng)
            fake_cond = torch.as_tensor(self.cond.sample_frequency(len(real), rng)[0], device=x.device)
            with torch.no_grad():
                fake = activate(self.net["generator"](self._noise(len(real), x.device), fake_cond), self.transform.spans)
            scores = critic(torch.cat([torch.cat([real, real_cond], 1), torch.cat([fake, fake_cond], 1)])).squeeze(1)
            labels = torch.cat([torch.ones(len(real)), torch.zeros(len(real))]).to(x.device)
            loss_c = private.step(private.criterion(scores, labels))
            if step % opts.critic_steps == 0:
                cond, entry = self.cond.sample_frequency(opts.batch_size, rng)
                with private.paused():
                    loss_g = self._generator_step(torch.as_tensor(cond, device=x.device), entry, wasserstein=False)
        return {"critic": loss_c, "generator": loss_g}

    def _noise(self, n: int, device: Any) -> Any:
        import torch

        return torch.randn(n, self.options.noise_dim, device=device)

    def _cond_batch(self, batch: int, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        """Conditional vectors from training-by-sampling, on the training device, and their entries."""
        import torch

        cond, entry, _ = self.cond.sample_train(batch, rng)
        return torch.as_tensor(cond, device=next(self.net.parameters()).device), entry

    def _entry_parts(self, entry: np.ndarray, device: Any) -> tuple[Any, Any]:
        """(categorical column index, category index) of each conditional-vector entry."""
        import torch

        column = np.searchsorted(self.cond.offsets, entry, side="right") - 1
        category = entry - self.cond.offsets[column]
        return torch.as_tensor(column, device=device), torch.as_tensor(category, device=device)

    def _condition_focus(self) -> tuple[str, float] | None:
        target, share = self.options.target, self.options.target_share
        return (target, share) if target is not None and share > 0 else None

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


class ImageGANOptions(NeuralImageOptions, PrivacyOptions):
    noise_dim: int = Field(64, ge=1, le=4096)
    width: int = Field(64, ge=4, le=1024)  # channels of the first feature map; doubled once
    learning_rate: float = Field(2e-4, gt=0, le=1)
    epochs: int = Field(200, ge=1, le=100_000)


class ImageGANFamily(PrivateFamily, NeuralImageFamily):
    id: ClassVar[str] = "gan-image"
    version: ClassVar[str] = "1"
    Options: ClassVar[type[ImageGANOptions]] = ImageGANOptions

    def _build(self) -> Any:
        from torch import nn

        from gensdk_gan.model import ImageCritic, ImageGenerator

        c, h, w = self.image_shape
        k, opts = len(self.classes), self.options
        norm = "batch" if opts.dp_epsilon is None else "group"
        return nn.ModuleDict({"generator": ImageGenerator(opts.noise_dim, k, c, h, w, opts.width),
                              "critic": ImageCritic(k, c, h, w, opts.width, norm=norm)})

    def _train_epoch(self, images: Any, onehot: Any, gen: Any) -> dict[str, float]:
        import torch
        from torch.nn import functional as F

        opts, g, d = self.options, self.net["generator"], self.net["critic"]
        if opts.dp_epsilon is not None:
            return self._train_epoch_private(images, onehot)
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

    def _train_epoch_private(self, images: Any, onehot: Any) -> dict[str, float]:
        """DP-SGD on the critic (gensdk_gan.dp): Poisson-sampled real images with their labels, generated
        images of classes drawn from the class shares, one batch of both. The generator's classes are drawn
        the same way, never taken from a batch of real images."""
        import torch
        from torch.nn import functional as F

        from gensdk_gan.dp import PrivateTraining

        opts, g, d = self.options, self.net["generator"], self.net["critic"]
        if self._private is None:
            self._optims = [torch.optim.Adam(g.parameters(), lr=opts.learning_rate, betas=(0.5, 0.999)), None]
            critic_optim = torch.optim.Adam(d.parameters(), lr=opts.learning_rate, betas=(0.5, 0.999))
            self._private = PrivateTraining(d, critic_optim, torch.nn.BCEWithLogitsLoss(), rows=len(images),
                                            batch_size=opts.batch_size, epochs=opts.epochs, options=opts)
        private, device = self._private, images.device
        for rows in private.batches():
            n = len(rows)
            fake_labels = self._onehot(torch.multinomial(self.class_prior.float(), n, replacement=True)).to(device)
            with torch.no_grad():
                fake = g(torch.randn(n, opts.noise_dim, device=device), fake_labels)
            logits = d(torch.cat([images[rows.to(device)], fake]), torch.cat([onehot[rows.to(device)], fake_labels])).squeeze(1)
            targets = torch.cat([torch.full((n,), 0.9), torch.zeros(n)]).to(device)
            loss_d = private.step(private.criterion(logits, targets))
            labels = self._onehot(torch.multinomial(self.class_prior.float(), opts.batch_size, replacement=True)).to(device)
            with private.paused():
                fake_logit = d(g(torch.randn(opts.batch_size, opts.noise_dim, device=device), labels), labels)
                loss_g = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
                self._optims[0].zero_grad(set_to_none=True)
                loss_g.backward()
                self._optims[0].step()
        return {"critic": loss_d, "generator": loss_g.item()}

    def _sample_pixels(self, onehot: Any, gen: Any) -> Any:
        import torch

        generator = self.net["generator"]
        device = next(generator.parameters()).device
        noise = torch.randn(onehot.shape[0], self.options.noise_dim, generator=gen)
        return generator(noise.to(device), onehot.to(device))
