"""Images on disk and bundled with scikit-image, and the Lightning data module for training."""

from .images import default_test_images, default_train_images, list_images, read_image, to_tensor

__all__ = ["ImageDataModule", "default_test_images", "default_train_images", "list_images", "read_image", "to_tensor"]


def __getattr__(name: str):
    # The data module needs pytorch_lightning (seconds to import); coding images does not.
    if name == "ImageDataModule":
        from .datamodule import ImageDataModule

        return ImageDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
