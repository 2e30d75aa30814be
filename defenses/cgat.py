"""CgAT: center-guided adversarial training (Wang, Lin, Li, WWW 2023; spec §1.4–1.10)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from hashbench.banks import CodeBank
from hashbench.codes import center_codes
from hashbench.defense import Defense, DefenseContext
from hashbench.methods.base import HashMethod, SGDParams
from hashbench.models.hash_model import HashModel
from hashbench.pgd import PGDConfig, pgd
from hashbench.training import TrainData, run_epochs


class CgAT(Defense):
    """Min-max training against adversaries that push codes away from their center codes.

    Paper: X. Wang, Y. Lin, Y. Li. *CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
    Retrieval*. WWW 2023.

    Per step (the released code's order, spec §1.9): ``c_pre`` = CHCM of the batch labels over
    the binary training bank ``B = sign(U)``; ``x_adv`` = PGD minimising ``⟨f(x'), c_pre⟩``
    (ε 8/255, step 2/255, 7 iterations, random start, α = 1); forward ``x_adv`` and ``x``;
    write ``u`` into the bank; ``c`` = CHCM again after the update; loss
    ``L_hash(u) − λ·mean(f(x_adv) ⊙ c)``.  The bank is preinstalled with the clean model's
    binary codes (it is the method's own bank when the method keeps one).

    Parameters: ``epochs`` 30, ``batch_size`` 32, SGD ``lr`` 0.01, ``momentum`` 0.9,
    ``weight_decay`` 5e-4 on all parameters, lr ×0.1 at iterations S/2 and 3S/4 (S = all
    iterations; ``faithful_scheduler`` drops a milestone that is not an integer, as the
    original float milestones never fire), ``epsilon``, ``step_size``, ``iterations``,
    ``random_start`` of the inner PGD, ``lam`` (λ = 1), ``weighting`` of the center code
    ("cgat" CHCM; "saat" DMFL), ``bank_init`` ("train": train-mode, augmented pass as the
    code does; "eval": eval-mode, un-augmented), ``pgd_mode`` (model mode while attacking;
    the code leaves it in "train").
    """

    name = "cgat"
    description = "center-guided adversarial training (CHCM center codes, 7-step PGD)"
    paper = "Wang, Lin, Li. CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval. WWW 2023"

    class Params(SGDParams):
        epochs: int = Field(30, gt=0)
        batch_size: int = Field(32, gt=0)
        faithful_scheduler: bool = False
        epsilon: float = Field(8 / 255, ge=0)
        step_size: float = Field(2 / 255, gt=0)
        iterations: int = Field(7, gt=0)
        random_start: bool = True
        lam: float = Field(1.0, ge=0)
        weighting: Literal["cgat", "saat"] = "cgat"
        bank_init: Literal["train", "eval"] = "train"
        pgd_mode: Literal["train", "eval"] = "train"

    def milestones(self, total_steps: int) -> list[float]:
        marks = [total_steps / 2, 3 * total_steps / 4]
        if self.params.faithful_scheduler:
            return [m for m in marks if float(m).is_integer()]
        return [float(int(m)) for m in marks]

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        p = self.params
        device = ctx.device
        method.setup(len(data), model.bits, data.labels, device)
        bank = method.bank if method.bank is not None else CodeBank(len(data), model.bits, data.labels, device)
        bank.preinstall(torch.sign(self._clean_outputs(model, data, ctx)))

        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
        steps_per_epoch = -(-len(data) // p.batch_size)
        milestones = self.milestones(p.epochs * steps_per_epoch)
        pgd_config = PGDConfig(p.epsilon, p.step_size, p.iterations, p.random_start, "none")
        done = 0

        def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            nonlocal done
            c_pre = center_codes(y, bank.binary(), bank.labels, weighting=p.weighting).to(device)
            model.train(p.pgd_mode == "train")
            x_adv = pgd(model, x, c_pre, pgd_config, targeted=False, generator=ctx.generator)
            model.train()
            u_adv = model(x_adv)
            u = model(x)
            bank.update(pos, u)
            hash_loss = method.loss(u, y, pos)
            c = center_codes(y, bank.binary(), bank.labels, weighting=p.weighting).to(device)
            adv_loss = -(u_adv * c).mean()
            loss = hash_loss + p.lam * adv_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            lr = p.lr * 0.1 ** sum(done >= m for m in milestones)
            for group in optimizer.param_groups:
                group["lr"] = lr
            return {"loss": loss.detach(), "hash": hash_loss.detach(), "adv": adv_loss.detach()}

        def before_epoch(epoch: int) -> None:
            method.on_epoch_start(epoch)

        history = run_epochs(
            data, step, epochs=p.epochs, batch_size=p.batch_size, augment=p.augment,
            generator=ctx.generator, device=device, before_epoch=before_epoch,
            reporter=ctx.reporter, description="defend cgat",
        )
        model.eval()
        return model, {"history": history, "milestones": milestones}

    def _clean_outputs(self, model: HashModel, data: TrainData, ctx: DefenseContext) -> torch.Tensor:
        """Outputs of every training item under the clean model, in bank order (spec §1.5)."""
        train_mode = self.params.bank_init == "train"
        model.train(train_mode)
        out = torch.zeros(len(data), model.bits, device=ctx.device)
        order = torch.randperm(len(data), generator=ctx.generator) if train_mode else torch.arange(len(data))
        with torch.no_grad():
            for start in range(0, len(data), 256):
                positions = order[start : start + 256]
                x, _, pos = data.batch(positions, augment=train_mode and self.params.augment,
                                       generator=ctx.generator, device=ctx.device)
                out[pos] = model(x)
        return out
