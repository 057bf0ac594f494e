"""FaceForensics++ layout, splits, dlib face crops, TFRecord schemas, synthetic data."""
