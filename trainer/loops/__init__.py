"""Training loops (single process or many under torchrun): the GAN and the encoder."""
