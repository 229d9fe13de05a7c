"""The TTSR generator: texture transformer (LTE + search-transfer) feeding the main network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.lte import LTE
from ttsr_lightning.models.main_net import TEXTURE_CHANNELS, MainNet, Texture
from ttsr_lightning.models.patch_search import check_relevance_kernel
from ttsr_lightning.models.search_transfer import SearchTransfer
from ttsr_lightning.pretrained import VggWeights

# Implementations of the search-transfer, by name; all share SearchTransfer's forward signature and
# its TransferredTextures result. "reference" is the official formulation (the whole relevance
# matrix, unfolded references); "lean" computes the same in chunks with bounded memory.
SEARCH_TRANSFERS: dict[str, type[nn.Module]] = {"reference": SearchTransfer, "lean": LeanSearchTransfer}


class GeneratorOutput(NamedTuple):
    """What the generator returns; h, w = LR size. The last five are None when use_hard_attention=False.

    sr: (B, 3, 4h, 4w) in [-1, 1].
    soft_attention: (B, 1, h, w) in [0, 1], S (returned even when the main net does not use it).
    hard_index: (B, h*w) int64, the Ref lv3 position chosen for each LR position, row-major in the
        (H/4, W/4) grid. With several references it counts positions in the concatenation of their
        lv3 grids, in list order (:func:`~ttsr_lightning.models.patch_search.split_hard_index`
        gives the reference and the position in it).
    t_lv3 (B, 256, h, w), t_lv2 (B, 128, 2h, 2w), t_lv1 (B, 64, 4h, 4w): transferred textures, >= 0.
    """

    sr: torch.Tensor
    soft_attention: torch.Tensor | None
    hard_index: torch.Tensor | None
    t_lv3: torch.Tensor | None
    t_lv2: torch.Tensor | None
    t_lv1: torch.Tensor | None


class TTSRGenerator(nn.Module):
    """TTSR (Yang et al., CVPR 2020) x4 generator, with every switch of the paper's ablations.

    Args:
        n_feats: main-network channels (64; the paper's "wider" ablation uses 80 and 96).
        num_res_blocks: residual blocks of (SFE, stage x1, stage x2, stage x4); official (16, 16, 8, 4).
        use_hard_attention: False is the paper's "Base": no texture transfer at all. No LTE and no
            search-transfer are built, the main net has no texture-fusion heads, and ``ref`` /
            ``ref_down_up`` are ignored. Then ``use_soft_attention`` and ``learnable_extractor`` must
            be False too (the paper's Base row ticks none of HA, SA, LTE).
        use_soft_attention: False ("Base+HA") fuses ``F + conv(cat(F, T))`` without the S weighting;
            S is still computed by the search (its arg-max is the hard attention) and returned.
        learnable_extractor: False ("w/o LTE") freezes the LTE at its VGG19 initialisation
            (``requires_grad=False``); the paper's ablation rows before "+LTE" use frozen VGG19
            features, which needs ``vgg_weights`` to give ImageNet weights to mean anything.
        csfi: False replaces the multi-branch CSFI network by one path of stacked stages; see
            :class:`~ttsr_lightning.models.main_net.MainNet` for the exact construction.
        vgg_weights: LTE initialisation, ``"imagenet"`` / ``"auto"`` / ``"random"`` / a file path
            (see :mod:`ttsr_lightning.pretrained`).
        search_transfer: implementation of the search-transfer, a key of ``SEARCH_TRANSFERS``
            (``"lean"``: chunked, memory linear in the image sizes; ``"reference"``: the official
            formulation).
        batched_extractor: run the LTE once over ``lr_up``, ``ref_down_up`` and ``ref`` stacked
            when they share a size (training crops), instead of three passes. Same function; the
            sums may round differently, so the default keeps the official three passes.
        bicubic_residual: NOT the paper's network (its configs keep this False): the main network
            predicts a correction to the bicubic input, ``sr = clamp(lr_up + MainNet(...), -1, 1)``,
            and its last convolution starts at zero, so the untrained generator is exactly the
            bicubic upsampler and every step of training can only add detail to it. The official
            MainNet has no global skip and needs many thousand steps to reach bicubic quality; the
            small model of the CPU default run (``model=small``) turns this on to show texture
            transfer within minutes.
        relevance_kernel: what computes each relevance tile's patch sums, Ref-norm scaling and max
            in the lean search's tiles: ``"torch"`` (torch passes, the default) or ``"triton"`` (one
            fused Triton kernel on CUDA; opt-in until a GPU run has shown it equal to the torch
            passes; a kernel that fails falls back to them with one warning). The same results either
            way; the ``"reference"`` search-transfer has no tiles and ignores it. See
            :class:`~ttsr_lightning.models.lean_search_transfer.LeanSearchTransfer`.

    ``config`` holds the architecture arguments (all but ``vgg_weights``, ``search_transfer``,
    ``batched_extractor`` and ``relevance_kernel``, which choose an initialisation and an
    implementation, not the function) as plain values, so a generator-only checkpoint can rebuild the
    module. State-dict keys are ``lte.*`` and ``main_net.*``: the official ``LTE.*`` / ``MainNet.*``
    with the prefix renamed.

    ``forward(lr, lr_up, ref, ref_down_up)``:
        lr: (B, 3, h, w) in [-1, 1]; lr_up: (B, 3, 4h, 4w) in [-1, 1], bicubic x4 of lr;
        ref: (B, 3, H, W) in [-1, 1] (H, W multiples of 4); ref_down_up: (B, 3, H, W), ref bicubic
        /4 then x4. The images are detached before the LTE (as official): the LTE learns through
        S and T only. Returns :class:`GeneratorOutput`.
        Several references: ``ref`` and ``ref_down_up`` are sequences (list or tuple) of R tensors,
        ``ref[i]`` and ``ref_down_up[i]`` both (B, 3, Hi, Wi), each reference its own size. The LTE
        runs on each; the search covers every position of every reference at once (the best
        relevance over all of them wins; a tie goes to the earlier reference) and S and the textures
        come from the reference chosen at each LR position. This needs ``search_transfer="lean"``
        (memory linear in the total reference area, no canvas). A sequence of one reference gives
        exactly the plain call's outputs.
    """

    def __init__(
        self,
        n_feats: int = 64,
        num_res_blocks: Sequence[int] = (16, 16, 8, 4),
        use_hard_attention: bool = True,
        use_soft_attention: bool = True,
        learnable_extractor: bool = True,
        csfi: bool = True,
        vgg_weights: VggWeights = "auto",
        search_transfer: str = "lean",
        batched_extractor: bool = False,
        bicubic_residual: bool = False,
        relevance_kernel: str = "torch",
    ) -> None:
        super().__init__()
        if not use_hard_attention and (use_soft_attention or learnable_extractor):
            raise ValueError(
                "use_hard_attention=False (Base: no texture transfer) needs use_soft_attention=False and "
                f"learnable_extractor=False; got use_soft_attention={use_soft_attention}, "
                f"learnable_extractor={learnable_extractor}"
            )
        if search_transfer not in SEARCH_TRANSFERS:
            raise ValueError(
                f"search_transfer must be one of {sorted(SEARCH_TRANSFERS)}, got {search_transfer!r}"
            )
        check_relevance_kernel(relevance_kernel)
        self.config: dict[str, Any] = {
            "n_feats": n_feats,
            "num_res_blocks": [int(n) for n in num_res_blocks],
            "use_hard_attention": use_hard_attention,
            "use_soft_attention": use_soft_attention,
            "learnable_extractor": learnable_extractor,
            "csfi": csfi,
            "bicubic_residual": bicubic_residual,
        }
        self.use_soft_attention = use_soft_attention
        self.bicubic_residual = bicubic_residual
        self.batched_extractor = batched_extractor
        self.lte: LTE | None = None
        self.search_transfer: nn.Module | None = None
        if use_hard_attention:
            self.lte = LTE(vgg_weights, requires_grad=learnable_extractor)
            self.search_transfer = (
                LeanSearchTransfer(relevance_kernel=relevance_kernel)
                if search_transfer == "lean"
                else SEARCH_TRANSFERS[search_transfer]()
            )
        # The fusion heads take the textures this LTE's levels give: (lv3, lv2, lv1) channels.
        texture_channels = TEXTURE_CHANNELS if self.lte is None else self.lte.channels[::-1]
        self.main_net = MainNet(
            n_feats, num_res_blocks, use_hard_attention, use_soft_attention, csfi, texture_channels
        )
        if bicubic_residual:
            output_conv = self.main_net.output_conv
            nn.init.zeros_(output_conv.weight)
            if output_conv.bias is not None:
                nn.init.zeros_(output_conv.bias)

    @property
    def texture_extractor(self) -> LTE | None:
        """The LTE, whose features of sr the transferal perceptual loss compares (None in Base)."""
        return self.lte

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimiser group: ``generator`` (all but the LTE) and ``lte`` (empty when
        no LTE is trained), each with its options (``optim.generator.param_groups.<group>``)."""
        lte_params = [] if self.lte is None else [p for p in self.lte.parameters() if p.requires_grad]
        lte_ids = {id(p) for p in lte_params}
        return {
            "generator": [p for p in self.parameters() if p.requires_grad and id(p) not in lte_ids],
            "lte": lte_params,
        }

    def synthesise(
        self,
        lr: torch.Tensor,
        soft_attention: torch.Tensor | None = None,
        t_lv3: Texture | None = None,
        t_lv2: Texture | None = None,
        t_lv1: Texture | None = None,
    ) -> torch.Tensor:
        """The main network's output (B, 3, 4h, 4w) for ``lr`` (B, 3, h, w) and what the search and
        transfer gave at its positions (S, the textures or functions making them; none in Base):
        S reaches the main network only with ``use_soft_attention``. See :meth:`output_image`."""
        return self.main_net(lr, soft_attention if self.use_soft_attention else None, t_lv3, t_lv2, t_lv1)

    def output_image(self, main_net_output: torch.Tensor, lr_up: torch.Tensor) -> torch.Tensor:
        """The SR image (B, 3, 4h, 4w) in [-1, 1] from the main network's output: that output itself
        (the paper), or with ``bicubic_residual`` the bicubic input corrected by it."""
        if not self.bicubic_residual:
            return main_net_output
        return torch.clamp(lr_up + main_net_output, -1.0, 1.0)

    def forward(
        self,
        lr: torch.Tensor,
        lr_up: torch.Tensor,
        ref: torch.Tensor | Sequence[torch.Tensor],
        ref_down_up: torch.Tensor | Sequence[torch.Tensor],
    ) -> GeneratorOutput:
        check_lr_up(lr, lr_up)
        batch = lr.size(0)
        if self.lte is None or self.search_transfer is None:
            sr = self.synthesise(lr)
            return GeneratorOutput(self.output_image(sr, lr_up), None, None, None, None, None)
        refs, refs_down_up = reference_lists(ref, ref_down_up, batch)
        if len(refs) > 1 and not isinstance(self.search_transfer, LeanSearchTransfer):
            raise ValueError(
                f"{len(refs)} references need search_transfer='lean'; the 'reference' implementation "
                "(the official formulation) searches one reference"
            )

        if self.batched_extractor and len(refs) == 1 and lr_up.shape == refs[0].shape:
            # one LTE pass over the three images (training crops share a size): fewer, larger kernels
            levels = self.lte(torch.cat([lr_up, refs_down_up[0], refs[0]]).detach())
            query_lv3, key_lv3, _ = levels[2].split(batch)
            keys, values = [key_lv3], [tuple(level[2 * batch :] for level in levels)]
        else:
            # Only lv3 of lr_up and ref_down_up is searched: their lv1 and lv2 are dropped at once.
            query_lv3 = self.lte(lr_up.detach())[2]
            keys = [self.lte(image.detach())[2] for image in refs_down_up]
            values = [self.lte(image.detach()) for image in refs]
        if len(refs) == 1:
            textures = self.search_transfer(query_lv3, keys[0], *values[0])
        else:
            value_lv1, value_lv2, value_lv3 = (list(level) for level in zip(*values, strict=True))
            textures = self.search_transfer(query_lv3, keys, value_lv1, value_lv2, value_lv3)
            del value_lv1, value_lv2, value_lv3
        del query_lv3, keys, values  # the Ref features live on in the textures only
        sr = self.synthesise(lr, textures.soft_attention, textures.t_lv3, textures.t_lv2, textures.t_lv1)
        return GeneratorOutput(self.output_image(sr, lr_up), *textures)


def check_lr_up(lr: torch.Tensor, lr_up: torch.Tensor) -> None:
    """Raises ValueError unless lr_up is (B, 3, 4h, 4w) for an lr of (B, 3, h, w)."""
    batch, _, height, width = lr.shape
    if lr_up.shape != (batch, 3, 4 * height, 4 * width):
        raise ValueError(
            f"lr_up must be 4x lr, ({batch}, 3, {4 * height}, {4 * width}); got {tuple(lr_up.shape)}"
        )


def reference_lists(
    ref: torch.Tensor | Sequence[torch.Tensor], ref_down_up: torch.Tensor | Sequence[torch.Tensor], batch: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``ref`` and ``ref_down_up`` as two lists, one (B, 3, Hi, Wi) tensor per reference.

    Raises ValueError naming the argument (and the reference number) that does not fit.
    """
    if isinstance(ref, torch.Tensor) and isinstance(ref_down_up, torch.Tensor):
        refs, refs_down_up, numbered = [ref], [ref_down_up], False
    elif not isinstance(ref, torch.Tensor) and not isinstance(ref_down_up, torch.Tensor):
        refs, refs_down_up, numbered = list(ref), list(ref_down_up), True
    else:
        raise ValueError(
            "ref and ref_down_up must both be tensors (one reference) or both sequences of tensors "
            f"(one per reference); got {type(ref).__name__} and {type(ref_down_up).__name__}"
        )
    if len(refs) != len(refs_down_up) or not refs:
        raise ValueError(
            "ref and ref_down_up must list the same number of references (at least one); "
            f"got {len(refs)} and {len(refs_down_up)}"
        )
    for number, (image, down_up) in enumerate(zip(refs, refs_down_up, strict=True)):
        index = f"[{number}]" if numbered else ""
        if not isinstance(image, torch.Tensor) or not isinstance(down_up, torch.Tensor):
            raise ValueError(
                f"ref{index} and ref_down_up{index} must be tensors, "
                f"got {type(image).__name__} and {type(down_up).__name__}"
            )
        if down_up.shape != image.shape or image.ndim != 4 or image.shape[:2] != (batch, 3):
            raise ValueError(
                f"ref{index} and ref_down_up{index} must both be ({batch}, 3, H, W); "
                f"got {tuple(image.shape)} and {tuple(down_up.shape)}"
            )
        if image.size(2) % 4 or image.size(3) % 4:
            # The LTE's lv3 grid is a quarter of the image; the transfer copies whole 4x4 blocks.
            raise ValueError(
                f"ref{index} must have sides that are multiples of 4, got {image.size(2)}x{image.size(3)}"
            )
    return refs, refs_down_up
