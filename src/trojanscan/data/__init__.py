"""Dataset readers (MNIST IDX, GTSRB, CIFAR-10, ImageFolder, .npz), synthetic data and the demo set."""

from trojanscan.data.base import Dataset, validate_images
from trojanscan.data.cifar import CIFAR10_CLASSES, load_cifar10, load_image_folder
from trojanscan.data.gtsrb import GTSRB_CLASSES, load_gtsrb
from trojanscan.data.mnist import load_mnist, read_idx_images, read_idx_labels
from trojanscan.data.npz import load_npz, save_npz
from trojanscan.data.registry import DATASETS, load_clean_data, load_dataset

__all__ = [
    "Dataset",
    "validate_images",
    "CIFAR10_CLASSES",
    "DATASETS",
    "GTSRB_CLASSES",
    "load_cifar10",
    "load_clean_data",
    "load_dataset",
    "load_gtsrb",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "read_idx_images",
    "read_idx_labels",
    "save_npz",
]
