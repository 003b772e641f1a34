"""Networks: the paper's StyleGAN (generator and discriminator with progressive growing)
and the image -> w encoder."""

from trainer.networks.encoder import Encoder, EncoderConfig
from trainer.networks.stylegan import Discriminator, Generator, StyleGANConfig

__all__ = ["Discriminator", "Encoder", "EncoderConfig", "Generator", "StyleGANConfig"]
