"""Counting a network's FLOPs, for plugins that report their own cost (``prepare_flops``, ``perturb_flops``)."""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def module_flops(build: Callable[[], nn.Module], *input_shapes: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of the network ``build()`` on zero inputs of ``input_shapes``.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device (no
    memory, no compute); a network that cannot be built there runs once for real, without
    gradients.
    """
    counter = FlopCounterMode(display=False)
    try:
        with torch.device("meta"):
            net = build()
            inputs = [torch.zeros(shape) for shape in input_shapes]
        with counter:
            net(*inputs)
    except Exception:
        counter = FlopCounterMode(display=False)
        net = build().eval()
        with torch.no_grad(), counter:
            net(*(torch.zeros(shape) for shape in input_shapes))
    return int(counter.get_total_flops())


@functools.lru_cache(maxsize=128)
def class_flops(cls: Callable[..., nn.Module], args: tuple, *input_shapes: tuple[int, ...]) -> int:
    """:func:`module_flops` of ``cls(*args)``, counted once per process for each (class, arguments,
    input shapes): plan estimates and every stage's timing record ask for the same networks."""
    return module_flops(lambda: cls(*args), *input_shapes)
