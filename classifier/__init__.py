"""The LeNet-style detector trained on per-pixel log-likelihood maps."""
