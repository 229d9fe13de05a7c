"""Super-resolution of any image size within a memory budget (evaluation and inference, no autograd).

- :mod:`.memory`: the ``max_memory`` setting and the memory a device has free;
- :mod:`.receptive_field`: how far the main network and the LTE see, from their configuration and layers;
- :mod:`.plan`: whether and how to tile, from the image sizes, the network and the budget;
- :mod:`.forward`: the forward that follows a plan (lean and untiled, or in tiles).

The networks in :mod:`ttsr_lightning.models` know nothing of memory; this package runs them.
"""

from ttsr_lightning.budgeted.forward import GlobalAttention, budgeted_forward, global_attention, window_sr
from ttsr_lightning.budgeted.memory import (
    AUTO_FRACTION,
    MemorySetting,
    available_memory,
    format_bytes,
    memory_budget,
    parse_memory_setting,
)
from ttsr_lightning.budgeted.plan import (
    DEFAULT_HALO,
    ForwardPlan,
    MemoryBudgetError,
    parse_halo,
    plan_for_inputs,
    plan_forward,
)
from ttsr_lightning.budgeted.receptive_field import lte_halo, main_net_receptive_field

__all__ = [
    "AUTO_FRACTION",
    "DEFAULT_HALO",
    "ForwardPlan",
    "GlobalAttention",
    "MemoryBudgetError",
    "MemorySetting",
    "available_memory",
    "budgeted_forward",
    "format_bytes",
    "global_attention",
    "lte_halo",
    "main_net_receptive_field",
    "memory_budget",
    "parse_halo",
    "parse_memory_setting",
    "plan_for_inputs",
    "plan_forward",
    "window_sr",
]
