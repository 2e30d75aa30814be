"""What every adversarial-training defense shares: the bank preinstall, the inner PGD, the
per-iteration milestone decay and the epoch loop with per-epoch loss logging.

A defense (CgAT, SAAT, ATRDH) writes only its per-batch loss; :func:`train_adversarially`
wraps it into an optimisation step, drives it with :func:`hashbench.retrieval.training.run_epochs`
(which raises :class:`~hashbench.retrieval.training.TrainingDiverged` naming the epoch and step of a
non-finite loss) and returns the log stored in the defended model's artifact.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import Field

from hashbench.api.defense import DefenseContext
from hashbench.api.method import HashMethod
from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_ITERATIONS, Params
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.banks import CodeBank
from hashbench.retrieval.pgd import PGDConfig, pgd
from hashbench.retrieval.training import TrainData, run_epochs

#: ``loss_fn(x, y, positions) -> losses``: ``losses["loss"]`` is minimised, the rest are logged.
BatchLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]

_PREINSTALL_BATCH = 256


class AdversarialParams(Params):
    """Settings of the min-max loop every adversarial-training defense has.

    ``epsilon``, ``step_size``, ``iterations``, ``random_start``: the inner PGD (8/255, 2/255,
    7, on).  ``pgd_mode``: model mode while attacking (the released codes leave it in "train",
    so dropout is active and batch-norm statistics move).  ``bank_init``: mode of the clean
    pass that preinstalls the code bank ("train": shuffled, augmented, train mode, as CgAT's
    code; "eval": eval mode, no augmentation, as SAAT's and ATRDH's).  ``faithful_scheduler``:
    the lr decays ×0.1 after S/2 and 3S/4 of the S iterations; the released codes pass float
    milestones to ``MultiStepLR``, so a non-integer one never fires — true reproduces that,
    false (default) floors it so that both decays happen.
    """

    epochs: int = Field(30, gt=0, le=MAX_EPOCHS)
    batch_size: int = Field(32, gt=0, le=MAX_BATCH_SIZE)
    augment: bool = True
    epsilon: float = Field(8 / 255, ge=0, le=1, description="L∞ budget of the inner attack")
    step_size: float = Field(2 / 255, gt=0)
    iterations: int = Field(7, gt=0, le=MAX_ITERATIONS, description="inner PGD iterations")
    random_start: bool = True
    pgd_mode: Literal["train", "eval"] = "train"
    bank_init: Literal["train", "eval"] = "train"
    faithful_scheduler: bool = False


def milestones(total_steps: int, faithful: bool) -> list[int]:
    """Iterations after which the lr is multiplied by 0.1: ⌊S/2⌋ and ⌊3S/4⌋ (at least 1).

    ``faithful`` keeps only the marks that are whole numbers, as ``MultiStepLR`` with the
    original float milestones ``[S/2, 3S/4]`` never reaches a fractional one.
    """
    marks = [total_steps / 2, 3 * total_steps / 4]
    if faithful:
        marks = [m for m in marks if float(m).is_integer()]
    return [max(1, int(m)) for m in marks]


def clean_outputs(model: HashModel, data: TrainData, ctx: DefenseContext, *, train_mode: bool,
                  augment: bool) -> torch.Tensor:
    """The model's outputs for every training item, in bank (training-position) order.

    ``train_mode`` visits the items in a shuffled order with the model in train mode (and
    augmentation when ``augment``), as CgAT's code does; otherwise eval mode, in order.
    """
    model.train(train_mode)
    out = torch.zeros(len(data), model.bits, device=ctx.device)
    order = torch.randperm(len(data), generator=ctx.generator) if train_mode else torch.arange(len(data))
    with torch.no_grad():
        for start in range(0, len(data), _PREINSTALL_BATCH):
            x, _, pos = data.batch(order[start : start + _PREINSTALL_BATCH], augment=train_mode and augment,
                                   generator=ctx.generator, device=ctx.device)
            out[pos] = model(x)
    return out


def preinstall_bank(model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext,
                    params: AdversarialParams) -> CodeBank:
    """Set the method up and return the training bank filled with the clean model's binary codes
    and every training label.

    The bank is the method's own when it keeps one (spec §1.5: the hashing loss's bank aliases
    the defense's, and CgAT's ``preinstall(U, L)`` installs the labels too), so the method's
    loss starts from the clean codes too; otherwise a new one.
    """
    method.setup(len(data), model.bits, data.labels, ctx.device)
    bank = method.bank if method.bank is not None else CodeBank(len(data), model.bits, data.labels, ctx.device)
    u = clean_outputs(model, data, ctx, train_mode=params.bank_init == "train", augment=params.augment)
    bank.preinstall(torch.sign(u), data.labels)
    return bank


def inner_attack(model: HashModel, x: torch.Tensor, code: torch.Tensor, params: AdversarialParams,
                 generator: torch.Generator, *, targeted: bool) -> torch.Tensor:
    """The inner maximisation: PGD on ``±mean(f(x')⊙code)`` (α = 1); leaves the model in train mode."""
    model.train(params.pgd_mode == "train")
    config = PGDConfig(params.epsilon, params.step_size, params.iterations, params.random_start, "none")
    x_adv = pgd(model, x, code, config, targeted=targeted, generator=generator)
    model.train()
    return x_adv


def train_adversarially(
    model: HashModel,
    method: HashMethod,
    data: TrainData,
    ctx: DefenseContext,
    params: AdversarialParams,
    optimizer: torch.optim.Optimizer,
    loss_fn: BatchLoss,
    *,
    description: str,
    also_scheduled: Sequence[torch.optim.Optimizer] = (),
) -> dict[str, Any]:
    """Minimise ``loss_fn(...)["loss"]`` with ``optimizer`` for ``params.epochs`` epochs.

    Every optimiser (``optimizer`` and ``also_scheduled``, e.g. ATRDH's prototype net) gets the
    same per-iteration ×0.1 decay at :func:`milestones`; only ``optimizer`` is stepped here.
    The method's per-epoch hook runs before each epoch.  Returns the log: per-epoch means of
    every loss, the milestones and the number of iterations.  The model ends in eval mode.
    """
    steps_per_epoch = -(-len(data) // params.batch_size)
    total = params.epochs * steps_per_epoch
    marks = milestones(total, params.faithful_scheduler)
    schedulers = [torch.optim.lr_scheduler.MultiStepLR(opt, marks, gamma=0.1)
                  for opt in (optimizer, *also_scheduled)]

    def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        model.train()
        losses = loss_fn(x, y, pos)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
        return {name: value.detach() for name, value in losses.items()}

    history = run_epochs(
        data, step, epochs=params.epochs, batch_size=params.batch_size, augment=params.augment,
        generator=ctx.generator, device=ctx.device, before_epoch=method.on_epoch_start,
        reporter=ctx.reporter, description=description,
    )
    model.eval()
    return {"history": history, "milestones": marks, "iterations": total}
