"""CodecLab: learned image and video compression research framework."""

import warnings

# compressai 1.2.8 calls torch.jit.script at import; torch 2.14 warns on every import.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)

__version__ = "0.1.0"
