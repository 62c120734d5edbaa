"""bimodal — PyTorch reproduction of Ngiam et al., "Multimodal Deep Learning" (ICML 2011).

Core models: :class:`RBM`, :class:`DBN`, :class:`BimodalDBN`, :func:`unroll`,
:class:`DeepAutoencoder`, :class:`BimodalAutoencoder`; their training-loop settings:
:class:`CDOptions` (RBMs, DBNs), :class:`FineTuneOptions` (autoencoders).
"""
__version__ = "0.1.0"

from .autoencoder import BimodalAutoencoder, DeepAutoencoder, unroll
from .dbn import DBN, BimodalDBN, concatenated_rbm
from .options import CDOptions, FineTuneOptions
from .rbm import RBM

__all__ = ["RBM", "DBN", "BimodalDBN", "BimodalAutoencoder", "DeepAutoencoder", "unroll", "concatenated_rbm",
           "CDOptions", "FineTuneOptions", "__version__"]
