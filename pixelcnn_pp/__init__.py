"""PixelCNN++ (Salimans et al., ICLR 2017) in TensorFlow 2: the universal background model."""
