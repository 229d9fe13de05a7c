"""TTSR as pure ``nn.Module``s (torch only): texture extractor, search-transfer, main network, critic."""

from ttsr_lightning.models.blocks import SFE, ImageTail, ResBlock
from ttsr_lightning.models.csfi import CSFI2, CSFI3, MergeTail
from ttsr_lightning.models.discriminator import Discriminator
from ttsr_lightning.models.generator import SEARCH_TRANSFERS, GeneratorOutput, TTSRGenerator
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.lte import LTE
from ttsr_lightning.models.main_net import MainNet
from ttsr_lightning.models.patch_search import split_hard_index
from ttsr_lightning.models.search_transfer import SearchTransfer, TransferredTextures
from ttsr_lightning.models.vgg19 import ImageNetNormalize, VGG19Features

__all__ = [
    "CSFI2",
    "CSFI3",
    "LTE",
    "SEARCH_TRANSFERS",
    "SFE",
    "Discriminator",
    "GeneratorOutput",
    "ImageNetNormalize",
    "ImageTail",
    "LeanSearchTransfer",
    "MainNet",
    "MergeTail",
    "ResBlock",
    "SearchTransfer",
    "TTSRGenerator",
    "TransferredTextures",
    "VGG19Features",
    "split_hard_index",
]
