"""Problem 1: a class-conditional DDPM written from scratch (MNIST-M + SVHN digits)."""
