"""Images on disk and bundled with scikit-image, and the Lightning data module for training."""

from .datamodule import ImageDataModule
from .images import default_test_images, default_train_images, list_images, read_image

__all__ = ["ImageDataModule", "default_test_images", "default_train_images", "list_images", "read_image"]
