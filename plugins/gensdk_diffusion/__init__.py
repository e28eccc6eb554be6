"""gensdk_diffusion: local diffusers pipelines (unconditional and text-to-image) and small DDPMs gensdk trains."""
