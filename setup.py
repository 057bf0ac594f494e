"""Package metadata for the neural conditional distribution deepfake detector."""

from setuptools import find_packages, setup

setup(
    name="ncdm-deepfake",
    version="0.1.0",
    description=(
        "Reference TensorFlow implementation of Khodabakhsh & Busch, 'A Generalizable "
        "Deepfake Detector based on Neural Conditional Distribution Modelling' (BIOSIG 2020)."
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["pixelcnn_pp*", "classifier*", "data_prep*", "experiments*"]),
    install_requires=[
        "tensorflow>=2.16",
        "dlib-bin>=19.24",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "pandas>=2.0",
        # pandas' Markdown (DataFrame.to_markdown) and LaTeX (DataFrame.to_latex) writers.
        "tabulate>=0.9",
        "Jinja2>=3.1",
        "matplotlib>=3.7",
        "absl-py>=2.0",
        "scikit-learn>=1.3",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6"],
        # Linux with an NVIDIA driver: TensorFlow with its CUDA and cuDNN wheels.
        "gpu": ["tensorflow[and-cuda]>=2.16"],
    },
)
