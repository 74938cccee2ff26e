"""Analysis and synthesis transforms, built from compressai's layers."""
