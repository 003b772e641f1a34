"""Training loops (single process or many under torchrun): the GAN now, the encoder later."""
