"""Dataset readers (MNIST IDX, GTSRB, CIFAR-10, ImageFolder, .npz), synthetic data and the demo set."""

from trojanscan.data.base import Dataset, validate_images

__all__ = ["Dataset", "validate_images"]
