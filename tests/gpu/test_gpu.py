"""On a CUDA GPU (marker ``gpu``; skipped without one): the speed options in a real training run, a
resume that restores the CUDA random state (in process, and after a real SIGKILL of the CLI), the lean
search's tiles sized from free GPU memory and its fused Triton pass against the torch passes, the
inference path within a memory budget, a training step that never synchronises with the host, and
the compiled step (with and without CUDA graphs) against the eager one.

    pytest -m gpu tests/gpu          # the first step of `make gpu-suite`

Every run is the real entry point (``train(cfg)``) on the tiny config of ``helpers.config`` with
``trainer=gpu``. The speed-option runs come last, the compiling ones last of all: they take longest
(on an H200, about 100 s each for the tiny model, against 5-20 s for every other test).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import open_dict

from helpers.config import compose_config, paper_losses
from helpers.interrupt import SimulatedKill
from helpers.sigkill import MULTISTEP_AT_EPOCH_1, TINY_CLI, assert_same_training_state, whole_and_resumed
from ttsr_lightning.budgeted import budgeted_forward, main_net_receptive_field, plan_forward
from ttsr_lightning.callbacks import ResumeCheckpoint
from ttsr_lightning.models import TTSRGenerator, patch_search
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.system import TTSRSystem
from ttsr_lightning.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# trainer=gpu turns cuDNN autotuning on; the runs here turn it on only where it is the option tested
GPU = ["trainer=gpu", "trainer.accelerator=gpu", "trainer.benchmark=false", "test=false"]
ALL_OPTIONS = [
    "trainer.precision=bf16-mixed",
    "system.channels_last=true",
    "model.generator.batched_extractor=true",
    "optim.fused=true",
    "trainer.benchmark=true",
    "system.compile=true",
]
SPEED_OPTIONS = {
    "bf16_mixed": ["trainer.precision=bf16-mixed"],
    "channels_last": ["system.channels_last=true"],
    "batched_extractor": ["model.generator.batched_extractor=true"],
    "fused_adam": ["optim.fused=true"],
    "cudnn_benchmark": ["trainer.benchmark=true"],
    "compile": ["system.compile=true"],
    "compile_cuda_graphs": ["system.compile=true", "system.compile_mode=reduce-overhead"],
    "all": ALL_OPTIONS,
}
NONDETERMINISTIC = "does not have a deterministic implementation"


@pytest.fixture(autouse=True)
def restore_global_switches() -> Iterator[None]:
    """Trainer(deterministic=..., benchmark=...) sets process-wide switches; later tests get them back."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


class CudaRngTrace(Callback):
    """The CUDA RNG state at the start of every training batch (by the run's batch number), then one draw
    from it: stands for any code drawing from the CUDA generator (dropout, WGAN-GP mixing weights)."""

    states: dict[int, torch.Tensor] = {}

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        resume = next(c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint))
        CudaRngTrace.states[resume.batches_seen + 1] = torch.cuda.get_rng_state()
        torch.rand(1, device=pl_module.device)


RESUME_ARCHITECTURES = {
    # no bicubic interpolation anywhere (its CUDA backward has no deterministic implementation):
    # every op deterministic, so the resumed run must equal the uninterrupted one bit for bit
    "deterministic_ops": (["model.generator.csfi=false", "model.generator.use_soft_attention=false"], "true"),
    # the paper's architecture: bicubic backward accumulates with atomics, so the weights may differ
    # by rounding; the random state must still be restored exactly
    "paper": ([], "warn"),
}


def _trained(cfg: Any, kill_after: int | None = None) -> tuple[dict[int, torch.Tensor], list[str]]:
    """Runs ``train(cfg)`` with the RNG trace (and a kill); the traced states and torch's nondeterminism
    warnings."""
    CudaRngTrace.states = {}
    with open_dict(cfg):
        cfg.callbacks.rng_trace = {"_target_": f"{__name__}.CudaRngTrace"}
        if kill_after is not None:
            cfg.callbacks.kill = {"_target_": "helpers.interrupt.KillAfterBatch", "batch": kill_after}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kill_after is None:
            train(cfg)
        else:
            with pytest.raises(SimulatedKill):
                train(cfg)
    return dict(CudaRngTrace.states), [str(w.message) for w in caught if NONDETERMINISTIC in str(w.message)]


@pytest.mark.parametrize("architecture", RESUME_ARCHITECTURES)
def test_killed_gpu_run_resumes_with_the_cuda_random_state(
    tmp_path: Path, sample_data_dir: Path, architecture: str
) -> None:
    overrides, deterministic = RESUME_ARCHITECTURES[architecture]
    common = [
        *GPU,
        *overrides,
        f"trainer.deterministic={deterministic}",
        "trainer.limit_train_batches=4",
        "callbacks.resume_checkpoint.every_n_batches=1",
    ]
    whole_states, whole_warnings = _trained(compose_config(tmp_path / "whole", sample_data_dir, common))
    reference = torch.load(tmp_path / "whole" / "run" / "checkpoints" / "last.ckpt", weights_only=True)

    killed_states, killed_warnings = _trained(
        compose_config(tmp_path / "killed", sample_data_dir, common), kill_after=6
    )
    checkpoint_path = tmp_path / "killed" / "run" / "checkpoints" / "last.ckpt"
    resumed = compose_config(tmp_path / "killed", sample_data_dir, [*common, f"ckpt_path={checkpoint_path}"])
    resumed_states, resumed_warnings = _trained(resumed)
    final = torch.load(checkpoint_path, weights_only=True)

    assert sorted(whole_states) == list(range(1, 9))
    assert sorted(killed_states) == list(range(1, 7)) and sorted(resumed_states) == [7, 8]
    for batch in range(1, 9):
        states = killed_states if batch <= 6 else resumed_states
        assert torch.equal(states[batch], whole_states[batch]), f"CUDA RNG state differs at batch {batch}"
    assert final["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 8

    reported = sorted(
        {message.split(" does not")[0] for message in whole_warnings + killed_warnings + resumed_warnings}
    )
    differences = {
        key: (value.float() - final["state_dict"][key].float()).abs().max().item()
        for key, value in reference["state_dict"].items()
        if value.is_floating_point()
    }
    largest = max(differences.values())
    print(
        f"{architecture}: largest weight difference {largest:.3g}; nondeterministic ops reported: {reported}"
    )
    if deterministic == "true":
        assert largest == 0, {key: d for key, d in differences.items() if d > 0}
        for ours, theirs in zip(final["optimizer_states"], reference["optimizer_states"], strict=True):
            for param_id, state in theirs["state"].items():
                for name, tensor in state.items():
                    assert torch.equal(tensor, ours["state"][param_id][name]), (param_id, name)
    # The paper's architecture: its CUDA bicubic backward accumulates with atomics, so two uninterrupted
    # runs already differ, and Adam turns rounding-level gradient differences into weight differences
    # up to its step size; no bound on the weights would tell a broken resume from that (the first
    # H200 run failed this test, its message lost: a bound of 1e-3 here, the likely cause, is gone).
    # What the resume owes this architecture is the random state, checked above at every batch; exact
    # weights are checked by the deterministic variant and by test_sigkilled_gpu_run_resumes_exactly.


def test_sigkilled_gpu_run_resumes_exactly(tmp_path: Path, sample_data_dir: Path) -> None:
    """The CLI on the GPU (one loader worker), SIGKILLed with its whole process group in the second
    epoch's adversarial phase and resumed from ``last.ckpt``: the weights, Adam moments and schedule
    equal an uninterrupted run's bit for bit. Every op is deterministic in this architecture, and the
    WGAN-GP mixing weights are drawn from the CUDA generator: a CUDA random state not restored would
    change every weight the critic's gradient penalty touches."""
    common = [
        *TINY_CLI,
        *RESUME_ARCHITECTURES["deterministic_ops"][0],
        f"paths.data_dir={sample_data_dir}",
        "data.train.num_workers=1",
        "trainer=gpu",
        "trainer.benchmark=false",
        "trainer.deterministic=true",
        MULTISTEP_AT_EPOCH_1,
    ]
    assert_same_training_state(*whole_and_resumed(common, tmp_path, kill_after_batch=6))


def _lte_like(lr_size: tuple[int, int], seed: int) -> tuple[torch.Tensor, ...]:
    """Post-ReLU query, key and lv1/lv2/lv3 values (CPU, fp32) for an LR and a same-size reference."""
    generator = torch.Generator().manual_seed(seed)
    height, width = lr_size

    def relu_noise(channels: int, scale: int) -> torch.Tensor:
        return torch.randn(1, channels, scale * height, scale * width, generator=generator).relu()

    return relu_noise(256, 1), relu_noise(256, 1), relu_noise(64, 4), relu_noise(128, 2), relu_noise(256, 1)


def _top2_gap(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Float64 gap between the best and second-best cosine relevance of each LR position: (h*w,)."""
    query_patches = F.normalize(F.unfold(query.double(), 3, padding=1)[0], dim=0)
    key_patches = F.normalize(F.unfold(key.double(), 3, padding=1)[0], dim=0)
    top2 = (key_patches.T @ query_patches).topk(2, dim=0).values
    return top2[0] - top2[1]


@pytest.mark.parametrize("conv_tf32", [True, False], ids=["default_tf32_convolutions", "no_tf32"])
def test_lean_search_on_gpu_equals_cpu(conv_tf32: bool) -> None:
    inputs = _lte_like((48, 64), seed=0)
    expected = LeanSearchTransfer()(*inputs)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=conv_tf32):
        result = LeanSearchTransfer()(*(tensor.cuda() for tensor in inputs))
    clear = _top2_gap(inputs[0], inputs[1]) > 1e-5  # outside near-ties fp32 rounding may flip
    assert clear.float().mean() > 0.95
    differs = (result.hard_index.cpu()[0] != expected.hard_index[0]) & clear
    assert not differs.any(), (
        f"hard_index differs at {int(differs.sum())} of {int(clear.sum())} positions without a near-tie "
        f"(cuDNN TF32 convolutions {'on' if conv_tf32 else 'off'})"
    )
    soft_error = (result.soft_attention.cpu() - expected.soft_attention).abs().max().item()
    assert soft_error <= 1e-5, f"S differs by {soft_error:.3g} (cuDNN TF32 convolutions {conv_tf32})"


def _peak_growth(call: Any) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = call()
    torch.cuda.synchronize()
    del result
    return torch.cuda.max_memory_allocated() - before


def test_lean_search_sizes_its_tiles_from_free_gpu_memory() -> None:
    # 96x128 LR against a same-size Ref: one tile of every LR position needs ~1.2 GB, under the 2 GiB cap
    inputs = tuple(tensor.cuda() for tensor in _lte_like((96, 128), seed=1))
    search = LeanSearchTransfer()  # chunk_size None: a quarter of free GPU memory, at most 2 GiB
    with torch.no_grad():
        search(*(tensor.cuda() for tensor in _lte_like((8, 8), seed=2)))  # warm-up: kernels, workspaces
        torch.cuda.empty_cache()
        roomy = _peak_growth(lambda: search(*inputs))

        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        if free < 4 * 2**30:
            pytest.skip(f"needs 4 GiB of free GPU memory, has {free / 2**30:.1f} GiB")
        hog = torch.empty(free - 2**30, dtype=torch.uint8, device="cuda")  # leaves ~1 GiB free
        free_now, _ = torch.cuda.mem_get_info()
        try:
            tight = _peak_growth(lambda: search(*inputs))
        finally:
            del hog
            torch.cuda.empty_cache()

    outputs = 4 * (256 + 128 * 4 + 64 * 16) * 96 * 128  # t_lv3 + t_lv2 + t_lv1, fp32
    print(
        f"peak growth {roomy / 2**20:.0f} MiB, {tight / 2**20:.0f} MiB with {free_now / 2**20:.0f} MiB free"
    )
    assert roomy > 2**30, "with plenty of memory the whole search should run as one ~1.2 GB tile"
    assert tight < free_now / 4 + outputs + 64 * 2**20, "the tile must shrink to a quarter of the free memory"


def test_budgeted_inference_on_gpu_stays_within_its_budget() -> None:
    """``budgeted_forward`` on the GPU (what ``infer`` / ``evaluate`` run with ``max_memory``): a budget
    under the untiled plan's estimate makes it tile; the measured peak of ``max_memory_allocated``
    stays under the budget, and with the halo at the receptive field the SR equals the untiled one to
    convolution rounding (cuDNN picks per-shape algorithms), S and the hard attention exactly."""
    torch.manual_seed(0)
    generator = TTSRGenerator(n_feats=16, num_res_blocks=[2, 2, 2, 2], vgg_weights="random").eval().cuda()
    images = torch.Generator().manual_seed(3)
    lr = torch.rand(1, 3, 120, 160, generator=images) * 2 - 1
    ref = torch.rand(1, 3, 480, 640, generator=images) * 2 - 1
    lr_up = F.interpolate(lr, scale_factor=4, mode="bicubic")
    ref_down_up = F.interpolate(
        F.interpolate(ref, scale_factor=0.25, mode="bicubic"), scale_factor=4, mode="bicubic"
    )
    inputs = [tensor.cuda() for tensor in (lr, lr_up, ref, ref_down_up)]
    field = main_net_receptive_field((2, 2, 2, 2), True, True)

    untiled_plan = plan_forward(generator, (120, 160), [(480, 640)], None)
    budget = untiled_plan.estimated_bytes
    while not (plan := plan_forward(generator, (120, 160), [(480, 640)], budget, halo=field)).tiled:
        budget = budget * 3 // 4  # the largest budget of a 3/4 ladder under which it tiles
    assert plan.tiled, plan.describe()
    with torch.no_grad():
        whole = budgeted_forward(generator, *inputs, untiled_plan)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        growth = _peak_growth(lambda: budgeted_forward(generator, *inputs, plan))
        tiled = budgeted_forward(generator, *inputs, plan)
    print(f"{plan.describe()}; measured peak growth {growth / 2**20:.0f} MiB")
    assert growth <= budget, f"peak growth {growth / 2**20:.0f} MiB over the budget {budget / 2**20:.0f} MiB"
    assert torch.equal(tiled.hard_index, whole.hard_index) and torch.equal(
        tiled.soft_attention, whole.soft_attention
    )
    error = (tiled.sr - whole.sr).abs().max().item()
    assert error < 1e-4, (
        f"tiled SR differs from the untiled one by {error:.3g} with the halo at the receptive field"
    )


@pytest.fixture
def triton_kernel_must_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Triton installed, the kernel not marked as failed by an earlier test, and a failure of it an
    error: the verification of the kernel must not pass by falling back to the torch passes."""
    pytest.importorskip("triton")
    monkeypatch.setattr(patch_search, "_triton_failure", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", patch_search.RelevanceKernelFallback)
        yield


@pytest.mark.usefixtures("triton_kernel_must_run")
def test_fused_relevance_pass_equals_its_torch_oracle_on_gpu() -> None:
    """The Triton kernel (models/relevance_triton.py) against the torch passes it replaces, on the same
    CUDA tensors: bit-identical maxima and positions (two blocks of Ref positions, a ragged last one);
    and the whole lean search with it turned on (``relevance_kernel="triton"``, off by default) and
    off: identical outputs."""
    from ttsr_lightning.models import relevance_triton

    generator = torch.Generator(device="cuda").manual_seed(0)
    rows, cols, ref_height, ref_width = 9, 13, 30, 41  # 1,230 Ref positions: two blocks of 1,024
    pixel_dots = torch.randn(
        3, (rows + 2) * (cols + 2), (ref_height + 2) * (ref_width + 2), generator=generator, device="cuda"
    )
    key_scale = torch.rand(3, ref_height * ref_width, generator=generator, device="cuda")
    key_scale[2] = 0  # all ties: the first position
    shape = ((rows, cols), (ref_height, ref_width))
    expected = patch_search.relevance_max(pixel_dots, key_scale, *shape)
    best, index = relevance_triton.relevance_max(pixel_dots, key_scale, *shape)
    assert torch.equal(best, expected[0]) and torch.equal(index, expected[1])

    features = [tensor.cuda() for tensor in _lte_like((48, 64), seed=4)]
    with torch.no_grad():
        fused = LeanSearchTransfer(direct_max_elements=0, relevance_kernel="triton")(*features)
        unfused = LeanSearchTransfer(direct_max_elements=0)(*features)
    for name in fused._fields:
        assert torch.equal(getattr(fused, name), getattr(unfused, name)), name


@pytest.mark.usefixtures("triton_kernel_must_run")
@pytest.mark.parametrize(
    "lr_size", [(83, 125), (270, 480)], ids=["cufed5_lr_125x83_ref_500x332", "1080p_output_lr_480x270"]
)
def test_triton_relevance_kernel_equals_the_torch_passes_at_full_size(lr_size: tuple[int, int]) -> None:
    """The check that decides whether ``relevance_kernel="triton"`` may become the default: the search
    with and without the kernel on a CUFED5 image (LR 125x83 against its 500x332 reference: 125x83
    lv3 positions each) and on a 1080p output (LR 480x270 against a same-size reference), with the
    same relevance tiles. Prints the largest difference of S and how many hard indices differ; the
    kernel claims 0 and 0."""
    generator = torch.Generator(device="cuda").manual_seed(1)
    query, key = (torch.randn(1, 256, *lr_size, generator=generator, device="cuda").relu() for _ in range(2))
    chunk_size = patch_search.chunk_size_for_budget(query, key)  # the same tiles, the same matmuls
    with torch.no_grad():
        torch_best, torch_index = patch_search.search(query, [key], chunk_size)
        best, index = patch_search.search(query, [key], chunk_size, relevance_kernel="triton")
    difference = (best - torch_best).abs().max().item()
    differing = int((index != torch_index).sum())
    print(
        f"LR {lr_size[1]}x{lr_size[0]}: Triton against torch passes: largest S difference {difference:.3g}, "
        f"{differing} of {index.numel()} hard indices differ"
    )
    assert difference == 0 and differing == 0


def _gpu_system(**options: Any) -> TTSRSystem:
    """A small generator with every loss of the paper's objective (the package's loss config)."""
    return TTSRSystem(
        generator={
            "_target_": "ttsr_lightning.models.TTSRGenerator",
            "n_feats": 16,
            "num_res_blocks": [2, 2, 2, 2],
            "vgg_weights": "random",
        },
        discriminator={"_target_": "ttsr_lightning.models.Discriminator", "in_size": 64},
        losses=paper_losses(),
        optim={"warmup_epochs": 0, "gan_k": 2},
        **options,
    )


def _synthetic_batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)

    def image(size: int) -> torch.Tensor:
        return torch.rand(4, 3, size, size, generator=generator) * 2 - 1

    return [
        {"lr": image(16), "lr_up": image(64), "hr": image(64), "ref": image(64), "ref_down_up": image(64)}
        for _ in range(count)
    ]


def _fit_on_gpu(system: TTSRSystem, batches: int, callbacks: list[Callback]) -> Trainer:
    trainer = Trainer(
        accelerator="gpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    loader = torch.utils.data.DataLoader(_synthetic_batches(batches), batch_size=None, pin_memory=True)
    trainer.fit(system, train_dataloaders=loader)
    return trainer


class SyncsPerBatch(Callback):
    """CUDA's synchronising calls per training batch after the first two, as torch reports them
    (``torch.cuda.set_sync_debug_mode("warn")``): from a batch's start to the next one's."""

    def __init__(self) -> None:
        self.caught: list[list[str]] = []
        self._catcher: Any = None
        self._records: list[Any] = []

    def _close(self) -> None:
        if self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self.caught.append([str(w.message).splitlines()[0] for w in self._records])
            self._catcher = None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, idx: int
    ) -> None:
        self._close()
        if idx >= 2:
            self._catcher = warnings.catch_warnings(record=True)
            self._records = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()  # the epoch's end reads the last checks on purpose


def test_a_training_step_never_synchronises_with_the_host() -> None:
    """The all-losses step (two critic steps, the generator's, logging) with pinned batches: torch's
    sync debug mode reports no synchronising call in steady state. (The non-finite checks of the batch
    two back are read from page-locked memory after waiting on a CUDA event recorded then.)"""
    torch.manual_seed(0)
    system = _gpu_system()
    syncs = SyncsPerBatch()
    _fit_on_gpu(system, batches=6, callbacks=[syncs])
    print(f"synchronising calls per batch from the third: {[len(c) for c in syncs.caught]}: {syncs.caught}")
    assert syncs.caught == [[]] * 4, syncs.caught  # batches 2 to 5


class FirstBatchAndGraphs(Callback):
    """The metrics logged by the first training batch, and Dynamo's graph count at each batch start."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.graphs: list[int] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, idx: int
    ) -> None:
        self.graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if idx == 0:
            self.first = {key: float(value) for key, value in trainer.callback_metrics.items()}


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_step_equals_the_eager_one_on_gpu(mode: str) -> None:
    """system.compile on the GPU (inductor; ``reduce-overhead``: CUDA graphs): the first all-losses
    batch logs the eager step's terms within TF32/fp32 rounding, and no graph is compiled after the
    first two batches."""
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        system = _gpu_system(compile=compiled, compile_mode=mode)
        runs[compiled] = FirstBatchAndGraphs()
        _fit_on_gpu(system, batches=4, callbacks=[runs[compiled]])
    eager, compiled_run = runs[False].first, runs[True].first
    print(f"{mode}: graphs at batch starts {runs[True].graphs}; eager {eager}; compiled {compiled_run}")
    graphs = runs[True].graphs
    assert graphs[2] == graphs[3], f"graphs compiled after the first two batches: {graphs}"
    assert set(compiled_run) == set(eager) and "train/loss_adversarial" in eager
    for key, value in eager.items():
        assert math.isclose(compiled_run[key], value, rel_tol=2e-3, abs_tol=1e-5), (
            key,
            compiled_run[key],
            value,
        )


class RecordRun(Callback):
    """What a run really did: device, precision, memory format, fused Adam, cuDNN autotuning."""

    seen: dict[str, Any] = {}

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        conv = next(
            m
            for m in pl_module.generator.main_net.modules()
            if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1
        )
        RecordRun.seen = {
            "device": pl_module.device.type,
            "precision": str(trainer.precision),
            "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last)
            and not conv.weight.is_contiguous(),
            "fused": bool(trainer.optimizers[0].defaults.get("fused")),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        }


@pytest.mark.parametrize("option", SPEED_OPTIONS)
def test_tiny_gpu_run_with_speed_option(tmp_path: Path, sample_data_dir: Path, option: str) -> None:
    overrides = SPEED_OPTIONS[option]
    cfg = compose_config(tmp_path, sample_data_dir, [*GPU, *overrides])
    with open_dict(cfg):
        cfg.callbacks.record = {"_target_": f"{__name__}.RecordRun"}
    metrics = train(cfg)

    seen = RecordRun.seen
    assert seen["device"] == "cuda"
    assert seen["precision"] == ("bf16-mixed" if "trainer.precision=bf16-mixed" in overrides else "32-true")
    assert seen["channels_last"] == ("system.channels_last=true" in overrides)
    assert seen["fused"] == ("optim.fused=true" in overrides)
    assert seen["cudnn_benchmark"] == ("trainer.benchmark=true" in overrides)
    losses = {key: value for key, value in metrics.items() if key.startswith("train/loss")}
    assert {"train/loss_adversarial", "train/loss_perceptual", "train/loss_transferal_perceptual"} <= set(
        losses
    )
    assert all(math.isfinite(value) for value in losses.values()), losses
    assert math.isfinite(metrics["val/psnr"])
    checkpoint = torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    state = checkpoint["state_dict"]
    assert not [key for key in state if "_orig_mod" in key]  # compiling keeps the state-dict keys
    assert all(value.isfinite().all() for value in state.values() if value.is_floating_point())
