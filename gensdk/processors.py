"""Generation-time processors a policy can hand a sampling family through `prepare_generation`.

Text families apply transformers' `LogitsProcessor` / `StoppingCriteria` directly. Families that sample from
noise (diffusion, and the GAN/VAE image families for their latent vector) apply the two kinds below: a policy
that watermarks in latent space supplies the starting noise, and a policy that watches or steers the sampler
gets a callback after every denoising step. As with every processor, the family must `context.take()` what it
applies; a processor left untaken blocks the outputs (fail closed).
"""

from __future__ import annotations

from typing import Any, Sequence

from gensdk.errors import RequestError

__all__ = ["InitialNoise", "StepCallback", "single_initial_noise"]


class InitialNoise:
    """Supplies the initial noise (or latents) of a sampler, instead of the family's own seeded draw.

    Subclasses implement `noise`. The tensor must have exactly `shape`, live on `device` and have `dtype`;
    the family checks that and raises a `GenerationError` naming the policy's processor otherwise.
    """

    def noise(self, shape: tuple[int, ...], *, generator: Any, device: Any, dtype: Any) -> Any:
        """Return the starting tensor; `generator` is the micro-batch's seeded `torch.Generator`."""
        raise NotImplementedError


class StepCallback:
    """Called by an iterative sampler after each step.

    Return None to leave the latents alone, or a tensor of the same shape to replace them (a policy that
    steers the sampler). Raising blocks the whole micro-batch, like any policy error.
    """

    def on_step(self, step: int, timestep: Any, latents: Any) -> Any | None:
        return None


def single_initial_noise(found: Sequence[InitialNoise]) -> InitialNoise | None:
    """At most one policy may choose the starting noise: two would silently overwrite each other."""
    if len(found) > 1:
        names = ", ".join(type(p).__name__ for p in found)
        raise RequestError(f"two policies supply the initial noise ({names}); enable only one of them")
    return found[0] if found else None
