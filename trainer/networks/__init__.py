"""Networks: the paper's StyleGAN (generator and discriminator with progressive growing)."""

from trainer.networks.stylegan import Discriminator, Generator, StyleGANConfig

__all__ = ["Discriminator", "Generator", "StyleGANConfig"]
