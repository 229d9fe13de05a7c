"""The lean no-grad forward, the budgeted (tiled) forward, its plan and the main network's receptive field."""

from __future__ import annotations

from typing import Any

import pytest
import skimage.data
import torch
from torch import nn

from helpers.config import TINY_GENERATOR
from ttsr_lightning.budgeted import (
    DEFAULT_HALO,
    ForwardPlan,
    MemoryBudgetError,
    budgeted_forward,
    lte_halo,
    main_net_receptive_field,
    plan_forward,
)
from ttsr_lightning.budgeted.forward import _lte_strips
from ttsr_lightning.budgeted.plan import _Footprint, tile_windows
from ttsr_lightning.models import LTE, MainNet, TTSRGenerator, patch_search
from ttsr_lightning.models.block_transfer import block_table, chosen_blocks, transfer_window, window_rows
from ttsr_lightning.models.patch_search import chunk_size_for_budget
from ttsr_lightning.models.search_transfer import SearchTransfer


def generator(**kwargs: Any) -> TTSRGenerator:
    torch.manual_seed(0)
    return TTSRGenerator(**{**TINY_GENERATOR, **kwargs}).eval()


def narrow_generator(**kwargs: Any) -> TTSRGenerator:
    """The tiny generator with an LTE of other widths: VGG19's layers to relu3_1 at a quarter of their
    channels (lv1, lv2, lv3 of 16, 32, 64), its main network built for them as the generator does."""
    model = generator(**kwargs)
    assert model.lte is not None
    narrow = {
        "slice1": {"0": (3, 16)},
        "slice2": {"2": (16, 16), "5": (16, 32)},
        "slice3": {"7": (32, 32), "10": (32, 64)},
    }
    for level, convs in narrow.items():
        for index, (in_channels, out_channels) in convs.items():
            setattr(getattr(model.lte, level), index, nn.Conv2d(in_channels, out_channels, 3, padding=1))
    net = model.main_net
    model.main_net = MainNet(
        net.n_feats, net.num_res_blocks, True, net.use_soft_attention, net.csfi, model.lte.channels[::-1]
    )
    return model.eval()


def photo_inputs(
    lr_size: tuple[int, int], ref_sizes: list[tuple[int, int]], batch: int = 1
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """lr (from the astronaut, bicubic /4), lr_up, and references cut from the coffee photograph."""
    astronaut = torch.tensor(skimage.data.astronaut()).permute(2, 0, 1).float().div(127.5).sub(1)
    coffee = torch.tensor(skimage.data.coffee()).permute(2, 0, 1).float().div(127.5).sub(1)
    height, width = lr_size
    lr_up = torch.stack([astronaut[:, 8 * i : 8 * i + 4 * height, 20 : 20 + 4 * width] for i in range(batch)])
    lr = torch.nn.functional.interpolate(lr_up, scale_factor=0.25, mode="bicubic", antialias=True)
    refs = [
        torch.stack([coffee[:, 30 * i : 30 * i + h, 40 * i : 40 * i + w]] * batch)
        for i, (h, w) in enumerate(ref_sizes)
    ]
    down_ups = [torch.flip(ref, dims=(3,)) for ref in refs]  # any image of the same size will do
    return lr.clamp(-1, 1), lr_up, refs, down_ups


def untiled(generator: TTSRGenerator, lr_size: tuple[int, int], refs: list[torch.Tensor]) -> ForwardPlan:
    return plan_forward(generator, lr_size, [(ref.size(2), ref.size(3)) for ref in refs], None)


# --------------------------------------------------------------------------------------- lean forward
@pytest.mark.parametrize("csfi", [True, False])
def test_forward_without_autograd_equals_the_training_path_bit_for_bit(csfi: bool) -> None:
    """In-place ReLUs and sums without autograd; the out-of-place operations with it: same numbers.

    With a frozen extractor, so that S is the search's in both (a learnable one recomputes S
    differentiably, which rounds differently)."""
    model = generator(csfi=csfi, num_res_blocks=(2, 1, 2, 1), learnable_extractor=False)
    lr, lr_up, refs, down_ups = photo_inputs((10, 12), [(32, 40), (24, 28)], batch=2)
    with torch.no_grad():
        lean = model(lr, lr_up, refs, down_ups)
    training = model(lr, lr_up, refs, down_ups)
    assert training.sr.requires_grad
    for name, tensor in lean._asdict().items():
        assert torch.equal(tensor, getattr(training, name).detach()), name


def test_main_net_takes_textures_lazily() -> None:
    """A texture may be a function called once, when its stage fuses it: the same output."""
    torch.manual_seed(0)
    net = MainNet(8, (1, 1, 1, 1)).eval()
    inputs = [torch.rand(1, 3, 6, 5), torch.rand(1, 1, 6, 5)]
    textures = [torch.rand(1, 256, 6, 5), torch.rand(1, 128, 12, 10), torch.rand(1, 64, 24, 20)]
    calls: list[int] = []

    def maker(level: int) -> Any:
        return lambda: calls.append(level) or textures[level]

    with torch.no_grad():
        expected = net(*inputs, *textures)
        assert torch.equal(net(*inputs, *(maker(level) for level in range(3))), expected)
    assert calls == [0, 1, 2]


@pytest.mark.parametrize("references", [1, 2])
def test_untiled_budgeted_forward_is_the_forward_bit_for_bit(references: int) -> None:
    model = generator()
    lr, lr_up, refs, down_ups = photo_inputs((10, 13), [(32, 40), (20, 24)][:references], batch=2)
    ref, down_up = (refs[0], down_ups[0]) if references == 1 else (refs, down_ups)
    plan = untiled(model, (10, 13), refs)
    assert not plan.tiled and plan.describe().startswith("LR 13x10: untiled, estimated peak")
    with torch.no_grad():
        expected = model(lr, lr_up, ref, down_up)
    out = budgeted_forward(model, lr, lr_up, ref, down_up, plan)
    for name in ("sr", "soft_attention", "hard_index"):
        assert torch.equal(getattr(out, name), getattr(expected, name)), name
    assert out.t_lv1 is None and out.t_lv2 is None and out.t_lv3 is None


def test_untiled_budgeted_forward_of_base_and_of_the_reference_search() -> None:
    base = generator(use_hard_attention=False, use_soft_attention=False, learnable_extractor=False)
    lr, lr_up, refs, down_ups = photo_inputs((9, 11), [(24, 28)])
    with torch.no_grad():
        expected = base(lr, lr_up, refs[0], down_ups[0])
    out = budgeted_forward(base, lr, lr_up, refs[0], down_ups[0], untiled(base, (9, 11), refs))
    assert torch.equal(out.sr, expected.sr) and out.soft_attention is None

    official = generator(search_transfer="reference")
    assert isinstance(official.search_transfer, SearchTransfer)
    with torch.no_grad():
        expected = official(lr, lr_up, refs[0], down_ups[0])
    # The official formulation runs untiled whatever the budget.
    plan = plan_forward(official, (9, 11), [(24, 28)], 2**20)
    assert not plan.tiled
    out = budgeted_forward(official, lr, lr_up, refs[0], down_ups[0], plan)
    assert torch.equal(out.sr, expected.sr) and out.t_lv1 is None


# --------------------------------------------------------------------------------------- receptive field
def probed_receptive_field(num_res_blocks: tuple[int, ...], csfi: bool, textures: bool) -> int:
    """The receptive field measured: the gradient of one output pixel with respect to every input, in
    float64, of a 2-channel network with positive weights (no ReLU is ever off, nothing cancels), on
    inputs wide enough that no border is reached; the farthest LR pixel with a nonzero gradient."""
    torch.manual_seed(0)
    net = MainNet(2, num_res_blocks, textures, textures, csfi).double()
    with torch.no_grad():
        for parameter in net.parameters():
            if parameter.ndim > 1:
                parameter.copy_((torch.rand_like(parameter) * 0.5 + 0.5) / parameter[0].numel())
            else:
                parameter.copy_(torch.rand_like(parameter) * 0.01 + 0.01)
        (net.merge_tail if csfi else net.tail).conv_tail2.weight.mul_(1e-9)  # stay inside the clamp
    height, width = 5, 2 * main_net_receptive_field(num_res_blocks, csfi, textures) + 41
    shapes = [(3, 1), (1, 1), (256, 1), (128, 2), (64, 4)][: 5 if textures else 1]
    inputs = [
        (
            torch.rand(1, channels, scale * height, scale * width, dtype=torch.float64) * 0.5 + 0.5
        ).requires_grad_()
        for channels, scale in shapes
    ]
    sr = net(*inputs)
    centre, reach = width // 2, 0
    for phase in range(4):
        gradients = torch.autograd.grad(sr[0, 0, 9, 4 * centre + phase], inputs, retain_graph=True)
        for gradient, (_, scale) in zip(gradients, shapes, strict=True):
            columns = gradient.abs().sum(dim=(0, 1, 2)).nonzero().flatten() // scale
            reach = max(reach, centre - int(columns.min()), int(columns.max()) - centre)
    return reach


@pytest.mark.parametrize(
    ("num_res_blocks", "csfi", "textures"),
    [
        ((1, 1, 1, 1), True, True),
        ((0, 0, 0, 0), True, True),
        ((2, 1, 3, 1), True, True),
        ((3, 0, 2, 2), True, False),
        ((1, 2, 0, 1), False, True),
        ((1, 1, 1, 1), False, False),
    ],
)
def test_receptive_field_is_what_the_gradient_reaches(
    num_res_blocks: tuple[int, ...], csfi: bool, textures: bool
) -> None:
    assert main_net_receptive_field(num_res_blocks, csfi, textures) == probed_receptive_field(
        num_res_blocks, csfi, textures
    )


def configured_networks() -> set[tuple[tuple[int, ...], bool, bool]]:
    """(residual blocks, CSFI, textures) of every generator the configs build: each ``conf/model/``
    choice under the default run and every experiment of the paper's tables."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ttsr_lightning.config_paths import CONFIG_DIR
    from ttsr_lightning.tools.params import experiment_settings

    generators = list(experiment_settings().values())
    for choice in sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml")):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            generators.append(compose(config_name="config", overrides=[f"model={choice}"]).model.generator)
    GlobalHydra.instance().clear()
    return {(tuple(g["num_res_blocks"]), bool(g["csfi"]), bool(g["use_hard_attention"])) for g in generators}


def test_receptive_field_of_every_configured_network_is_what_its_gradient_reaches() -> None:
    """The budget's walk through MainNet is a second description of its layout: checked against the
    network itself for every architecture the configs can build (the paper's is 100 LR pixels)."""
    networks = configured_networks()
    paper = ((16, 16, 8, 4), True, True)  # probed by the next test
    assert paper in networks and ((4, 4, 2, 1), True, True) in networks
    for blocks, csfi, textures in sorted(networks - {paper}):
        assert main_net_receptive_field(blocks, csfi, textures) == probed_receptive_field(
            blocks, csfi, textures
        ), (blocks, csfi, textures)


def test_receptive_field_of_the_paper_network() -> None:
    assert (
        main_net_receptive_field((16, 16, 8, 4)) == 100 == probed_receptive_field((16, 16, 8, 4), True, True)
    )
    assert main_net_receptive_field((16, 16, 8, 4), csfi=False) == 82


# --------------------------------------------------------------------------------------- tiles
def test_lte_strips_give_the_whole_image_features() -> None:
    """Exact up to float rounding: a convolution over a strip may sum in another order (oneDNN picks
    its kernel by shape). The halo, read off the LTE's layers, is VGG19's reach of 10 pixels beyond a
    lv3 block on the 4-pixel grid of its poolings."""
    torch.manual_seed(0)
    lte = LTE("random").eval()
    assert lte_halo(lte) == 12
    image = torch.rand(2, 3, 76, 36) * 2 - 1
    with torch.no_grad():
        whole = lte(image)
        strips = list(_lte_strips(lte, image, 5))
    assert [first for first, _ in strips] == [0, 5, 10, 15]
    for level in range(3):
        strip_level = torch.cat([levels[level] for _, levels in strips], dim=2)
        torch.testing.assert_close(strip_level, whole[level], rtol=0, atol=1e-5)


def test_window_textures_are_the_whole_grids_with_the_dimmed_ring_at_the_image_border_only() -> None:
    """A window's textures read the whole grid's choices: equal to the whole map's positions, the
    official fold's dimmed outer ring only where the window touches the image border."""
    torch.manual_seed(0)
    ref_sizes = [(5, 7), (4, 3)]
    values = [[torch.rand(2, 16, s * h, s * w) for h, w in ref_sizes] for s in (1, 2, 4)]
    hard_index = torch.randint(0, 5 * 7 + 4 * 3, (2, 9 * 11))
    chosen = chosen_blocks(hard_index, ref_sizes, (9, 11))
    whole_rows = window_rows(chosen, (0, 0, 9, 11))
    for level, block in enumerate((1, 2, 4)):
        table = block_table(values[level], ref_sizes, block)
        whole = transfer_window(table, whole_rows, 2, (9, 11), block)
        for top, left, height, width in [(0, 0, 4, 5), (3, 2, 4, 6), (5, 6, 4, 5), (0, 0, 9, 11)]:
            window = transfer_window(
                table, window_rows(chosen, (top, left, height, width)), 2, (height, width), block
            )
            expected = whole[
                :, :, block * top : block * (top + height), block * left : block * (left + width)
            ]
            assert torch.equal(window, expected)


def tiled_plan(
    lr_size: tuple[int, int], tile: tuple[int, int], halo: int, strip_rows: int = 10**6
) -> ForwardPlan:
    """A tiled plan; by default one LTE pass per image and the search's own relevance tiles, so that S
    and the hard attention are exactly the untiled ones."""
    return ForwardPlan(lr_size, tile, halo, strip_rows, None, 0, None)


@pytest.mark.parametrize(("csfi", "batch", "references"), [(True, 1, 1), (True, 2, 2), (False, 1, 2)])
def test_tiles_with_a_halo_covering_the_receptive_field_equal_the_whole_image(
    csfi: bool, batch: int, references: int
) -> None:
    model = generator(csfi=csfi)
    halo = main_net_receptive_field((1, 1, 1, 1), csfi)
    lr_size = (2 * halo + 9, 2 * halo + 14)  # three tiles in each direction: interior tiles too
    lr, lr_up, refs, down_ups = photo_inputs(lr_size, [(28, 36), (24, 20)][:references], batch)
    ref, down_up = (refs[0], down_ups[0]) if references == 1 else (refs, down_ups)
    whole = budgeted_forward(model, lr, lr_up, ref, down_up, untiled(model, lr_size, refs))
    tiled = budgeted_forward(model, lr, lr_up, ref, down_up, tiled_plan(lr_size, (halo, halo), halo))
    assert torch.equal(tiled.hard_index, whole.hard_index)
    assert torch.equal(tiled.soft_attention, whole.soft_attention)
    torch.testing.assert_close(tiled.sr, whole.sr, rtol=0, atol=1e-6)


def test_lte_strips_and_budgeted_relevance_tiles_round_differently_only() -> None:
    model = generator()
    lr_size = (30, 34)
    lr, lr_up, refs, down_ups = photo_inputs(lr_size, [(28, 36), (24, 20)])
    whole = budgeted_forward(model, lr, lr_up, refs, down_ups, untiled(model, lr_size, refs))
    plan = ForwardPlan(lr_size, (12, 13), 20, 4, 2**16, 0, None)
    tiled = budgeted_forward(model, lr, lr_up, refs, down_ups, plan)
    assert torch.equal(tiled.hard_index, whole.hard_index)  # no near-tie among these photographs' patches
    torch.testing.assert_close(tiled.soft_attention, whole.soft_attention, rtol=0, atol=1e-5)
    torch.testing.assert_close(tiled.sr, whole.sr, rtol=0, atol=1e-5)


def test_a_halo_short_of_the_receptive_field_deviates_less_as_it_grows() -> None:
    model = generator()
    lr_size = (30, 34)
    lr, lr_up, refs, down_ups = photo_inputs(lr_size, [(28, 36)])
    whole = budgeted_forward(model, lr, lr_up, refs[0], down_ups[0], untiled(model, lr_size, refs)).sr
    deviations = []
    for halo in (0, 2, 6):
        sr = budgeted_forward(model, lr, lr_up, refs[0], down_ups[0], tiled_plan(lr_size, (15, 17), halo)).sr
        deviations.append(float((sr - whole).abs().max()))
    assert deviations[0] > deviations[1] > deviations[2] > 0


@pytest.mark.parametrize("strips", [False, True], ids=["one_pass", "lte_strips"])
def test_the_budgeted_search_runs_the_generators_relevance_kernel(
    monkeypatch: pytest.MonkeyPatch, strips: bool
) -> None:
    """``relevance_kernel`` reaches the budgeted forward's global search, whole or strip by strip: a
    stand-in for the Triton kernel (given CPU tensors here) is called with "triton" only, and the
    outputs are the same."""
    calls: list[tuple[int, int]] = []

    def stand_in(*arguments: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(arguments[2])
        return patch_search.relevance_max(*arguments)

    monkeypatch.setattr(patch_search, "_TRITON_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(patch_search, "_triton_failure", None)
    monkeypatch.setattr(patch_search, "_triton_kernel", lambda: stand_in)
    lr_size = (12, 14)
    lr, lr_up, refs, down_ups = photo_inputs(lr_size, [(28, 36)])
    outputs = {}
    for kernel in ("torch", "triton"):
        model = generator(relevance_kernel=kernel)
        strip_plan = ForwardPlan(lr_size, lr_size, 0, 4, 2**20, 0, None)  # one main-network tile
        plan = strip_plan if strips else untiled(model, lr_size, refs)
        outputs[kernel] = budgeted_forward(model, lr, lr_up, refs[0], down_ups[0], plan)
        assert bool(calls) == (kernel == "triton"), kernel
    # every LR position searched once; in 3 strips of 4 rows also the row beyond each inner strip border
    searched_rows = 12 + 2 * 2 if strips else 12
    assert sum(rows * cols for rows, cols in calls) == searched_rows * 14
    for name in ("sr", "soft_attention", "hard_index"):
        assert torch.equal(getattr(outputs["triton"], name), getattr(outputs["torch"], name)), name


def test_chunk_size_is_counted_in_float32_under_autocast() -> None:
    query, key = torch.rand(1, 256, 10, 12), torch.rand(1, 256, 30, 40)
    assert chunk_size_for_budget(query.bfloat16(), key, 2**20) == chunk_size_for_budget(query, key, 2**20)
    assert chunk_size_for_budget(query, key, 2**20) == 2**20 // (4 * (30 * 40 + 32 * 42))


# --------------------------------------------------------------------------------------- plans
def test_plan_is_untiled_when_the_whole_image_fits() -> None:
    model = generator()
    plan = plan_forward(model, (40, 50), [(160, 200)], None)
    assert not plan.tiled and plan.tile == (40, 50) and plan.halo == 0 and plan.search_tile_bytes is None
    assert plan_forward(model, (40, 50), [(160, 200)], plan.estimated_bytes) == plan._replace(
        budget=plan.estimated_bytes
    )


def test_plan_within_a_budget_tiles_and_its_estimate_fits() -> None:
    model = generator(n_feats=64)
    sizes = [(64, 80), (40, 40)]
    whole = plan_forward(model, (160, 200), sizes, None)
    budget = whole.estimated_bytes // 4
    plan = plan_forward(model, (160, 200), sizes, budget)
    assert plan.tiled and plan.halo == min(DEFAULT_HALO, main_net_receptive_field((1, 1, 1, 1)))
    assert plan.estimated_bytes <= budget and plan.search_tile_bytes is not None
    assert "main-network tiles of" in plan.describe() and f"halo of {plan.halo}" in plan.describe()
    # a tighter budget: smaller tiles, LTE strips, smaller relevance tiles
    tight = plan_forward(model, (160, 200), sizes, budget // 2)
    assert tight.tile[0] * tight.tile[1] < plan.tile[0] * plan.tile[1]
    assert tight.strip_rows < 160 and tight.estimated_bytes <= budget // 2


def test_a_reference_too_large_for_the_budget_is_refused_by_name() -> None:
    model = generator()
    with pytest.raises(
        MemoryBudgetError, match=r"memory budget 4 MiB too small: the reference\(s\) 400x320 need"
    ):
        plan_forward(model, (50, 50), [(320, 400)], 4 * 2**20)


def test_tiled_forward_of_base_within_a_budget() -> None:
    base = generator(use_hard_attention=False, use_soft_attention=False, learnable_extractor=False)
    lr, lr_up, refs, down_ups = photo_inputs((40, 120), [(8, 8)])
    whole = plan_forward(base, (40, 120), [], None)
    plan = plan_forward(base, (40, 120), [], whole.estimated_bytes // 2)
    assert plan.tiled
    with torch.no_grad():
        expected = base(lr, lr_up, refs[0], down_ups[0]).sr
    out = budgeted_forward(base, lr, lr_up, refs[0], down_ups[0], plan)
    halo_exact = plan.halo >= main_net_receptive_field((1, 1, 1, 1), use_hard_attention=False)
    torch.testing.assert_close(out.sr, expected, rtol=0, atol=1e-6 if halo_exact else 1e-3)


def test_plan_must_match_the_input() -> None:
    model = generator()
    lr, lr_up, refs, down_ups = photo_inputs((9, 11), [(24, 28)])
    with pytest.raises(ValueError, match=r"the plan is for an LR of \(10, 11\)"):
        budgeted_forward(model, lr, lr_up, refs[0], down_ups[0], untiled(model, (10, 11), refs))


# --------------------------------------------------------------------------------------- other widths
def test_the_plan_reads_the_widths_off_the_generators_modules() -> None:
    """The footprint's widths are the modules' own: the LTE's convolutions, the main network's
    channels; an LTE of other widths or a wider main network changes the estimate by what they hold."""
    sizes = ((40, 50), [(64, 80), (40, 40)])
    paper_lte, wide, narrow = generator(), generator(n_feats=32), narrow_generator(n_feats=32)
    paper, wider, narrower = (_Footprint.of(model, 2, *sizes) for model in (paper_lte, wide, narrow))
    for model, footprint in ((paper_lte, paper), (narrow, narrower)):
        assert model.lte is not None
        convs = [
            [layer for layer in level if isinstance(layer, nn.Conv2d)][-1]
            for level in (model.lte.slice1, model.lte.slice2, model.lte.slice3)
        ]
        assert footprint.lte_channels == tuple(conv.out_channels for conv in convs)
        assert footprint.n_feats == model.main_net.conv11_tail.out_channels
        assert footprint.lte_halo == 12
    heads = (paper_lte.main_net.conv33_head, paper_lte.main_net.conv22_head, paper_lte.main_net.conv11_head)
    assert tuple(head.in_channels - 8 for head in heads if head is not None) == paper.lte_channels
    assert paper.lte_channels == (64, 128, 256) and narrower.lte_channels == (16, 32, 64)
    assert (paper.n_feats, wider.n_feats) == (8, 32)
    assert paper.table_values_per_lv3 == 64 * 16 + 128 * 4 + 256 == 4 * narrower.table_values_per_lv3
    assert paper.tables() == wider.tables() == 4 * narrower.tables()
    assert paper.keys() == 4 * narrower.keys() and paper.query(10) == 4 * narrower.query(10)
    assert paper.lte_strip(3) == 4 * narrower.lte_strip(3)
    # a main-network window: 8 output-resolution maps of n_feats channels (16 per LR position)
    assert wider.window(1) - paper.window(1) == 2 * 8 * (32 - 8) * 16 * 4
    assert wider.window(1) - narrower.window(1) == 2 * 3 * narrower.table_values_per_lv3 * 4
    # the search dominates these plans: narrower features, a smaller estimate
    plans = [plan_forward(model, *sizes, None, batch=2) for model in (paper_lte, narrow)]
    cpu_tile = 2**28  # the search's default relevance tile on CPU
    assert plans[0].estimated_bytes == paper.search(40, cpu_tile) > narrower.search(40, cpu_tile)
    assert plans[1].estimated_bytes == narrower.search(40, cpu_tile)
    # without texture transfer the main network does: its estimate grows with n_feats
    base = {"use_hard_attention": False, "use_soft_attention": False, "learnable_extractor": False}
    base_plans = [plan_forward(generator(n_feats=n, **base), (40, 50), [], None) for n in (8, 32)]
    assert base_plans[1].estimated_bytes - base_plans[0].estimated_bytes == 40 * 50 * 8 * (32 - 8) * 16 * 4


@pytest.mark.parametrize("widths", ["n_feats_32", "narrow_lte"])
def test_the_budgeted_forward_of_a_generator_of_other_widths_is_exact(widths: str) -> None:
    """Untiled, the forward bit for bit. Within a budget one LR position short of the whole image's
    main network, planned from the modules' widths (two tiles), and in LTE strips of the LTE's own
    halo: the whole image's numbers up to float rounding (the plan's halo is the receptive field)."""
    model = generator(n_feats=32) if widths == "n_feats_32" else narrow_generator()
    halo = main_net_receptive_field((1, 1, 1, 1))
    lr_size, ref_sizes = (2 * halo + 9, 2 * halo + 14), [(28, 36), (24, 20)]
    lr, lr_up, refs, down_ups = photo_inputs(lr_size, ref_sizes)
    with torch.no_grad():
        expected = model(lr, lr_up, refs, down_ups)
    whole = budgeted_forward(model, lr, lr_up, refs, down_ups, untiled(model, lr_size, refs))
    for name in ("sr", "soft_attention", "hard_index"):
        assert torch.equal(getattr(whole, name), getattr(expected, name)), name
    footprint = _Footprint.of(model, 1, lr_size, ref_sizes)
    budget = footprint.resident() + footprint.window(lr_size[0] * lr_size[1] - 1)
    plan = plan_forward(model, lr_size, ref_sizes, budget)
    assert plan.tiled and plan.halo == halo and plan.estimated_bytes <= budget
    assert len(tile_windows(lr_size, plan.tile, plan.halo)) == 2
    tiled = budgeted_forward(model, lr, lr_up, refs, down_ups, plan._replace(strip_rows=5))
    assert torch.equal(tiled.hard_index, whole.hard_index)
    torch.testing.assert_close(tiled.soft_attention, whole.soft_attention, rtol=0, atol=1e-5)
    torch.testing.assert_close(tiled.sr, whole.sr, rtol=0, atol=1e-5)
