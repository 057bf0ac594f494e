"""Data preparation: dataset adapters (FF++, generated), splits, frames, dlib face crops,
the face stage with its journal and manifest, TFRecord schemas, the generated dataset."""
