"""ProS-GAN: prototype-supervised adversarial network (Wang et al., CVPR 2021), spec §2.3."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from hashbench.api.attack import Attack, AttackContext, AttackParams, PrepareSizes
from hashbench.api.flops import class_flops
from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_ITERATIONS, MAX_WIDTH
from hashbench.errors import PluginError
from hashbench.progress import Reporter
from hashbench.retrieval.codes import to_binary
from hashbench.retrieval.pgd import project
from hashbench.retrieval.prototype import PrototypeNet, prototype_training_flops, sample_targets, target_candidates
from hashbench.retrieval.training import run_epochs

#: Width of ProsganPrototypeNet's semantic feature r (label → hidden → r), as in the paper.
SEMANTIC_DIM = 512
#: Channels of the label encoder's first feature map (halved by each of its four upsamplings).
LABEL_CHANNELS = 128
#: Adam betas of all three networks.
BETAS = (0.5, 0.999)
#: Fractions of the prototype training steps after which its learning rate is divided by 10.
PROTOTYPE_MILESTONES = (0.5, 0.75)
#: Stride-2 convolutions of the discriminator (a 224 image ends as a 7×7 map).
DISCRIMINATOR_DEPTH = 5


# --- networks ---------------------------------------------------------------------------

class ProsganPrototypeNet(nn.Module):
    """ProS-GAN's PrototypeNet: label ``t`` → semantic feature ``r`` → (prototype code ``h = tanh(W r)``,
    label guess ``σ(V r)``).

    The label → r → h part is the shared :class:`hashbench.retrieval.prototype.PrototypeNet` (THA's net,
    with r of 512 dimensions); ProS-GAN adds the classifier head and hands r to the generator.
    """

    def __init__(self, num_classes: int, bits: int, hidden: int = 4096) -> None:
        super().__init__()
        self.codes = PrototypeNet(num_classes, bits, (hidden, SEMANTIC_DIM))
        self.classifier = nn.Linear(SEMANTIC_DIM, num_classes)

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.codes.feature(labels)
        return r, torch.tanh(self.codes.hash(r)), torch.sigmoid(self.classifier(r))


def prototype_loss(h: torch.Tensor, label_pred: torch.Tensor, labels: torch.Tensor,
                   train_codes: torch.Tensor, train_labels: torch.Tensor) -> torch.Tensor:
    """PrototypeNet objective: pairwise likelihood to the training codes + label MSE + quantisation.

    ``mean_ij[log(1 + e^θ_ij) − s_ij θ_ij] + MSE(t̂, t) + Σ(sign h − h)² / (10⁴ b)`` with
    ``θ_ij = ½ h_i·b_j`` and ``s_ij = 1[t_i·l_j > 0]`` over the batch i and every training item j.
    """
    s = (labels @ train_labels.T > 0).float()
    theta = 0.5 * h @ train_codes.T
    likelihood = (F.softplus(theta) - s * theta).mean()
    quantisation = (torch.sign(h) - h).pow(2).sum() / (1e4 * h.shape[0])
    return likelihood + F.mse_loss(label_pred, labels) + quantisation


def _norm_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_norm_relu(nn.Conv2d(channels, channels, 3, padding=1, bias=False), channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LabelEncoder(nn.Module):
    """Semantic feature → a 3-channel image-sized map: a linear layer onto a (S/16)² grid, four
    ×2 transposed convolutions and a 3×3 convolution (14² → 224² at the paper's size)."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.grid = image_size // 16
        self.fc = nn.Sequential(nn.Linear(SEMANTIC_DIM, LABEL_CHANNELS * self.grid**2), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c = LABEL_CHANNELS
        for _ in range(4):
            layers += _norm_relu(nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=False), c // 2)
            c //= 2
        layers.append(nn.Conv2d(c, 3, 3, padding=1, bias=False))
        self.up = nn.Sequential(*layers)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(r).view(r.shape[0], LABEL_CHANNELS, self.grid, self.grid))


class AdvGenerator(nn.Module):
    """Image in [−1, 1] and semantic feature → adversarial image in [−1, 1].

    Label map ⊕ image (6 channels) → 7×7 conv → two stride-2 convolutions → residual blocks
    (encoder) → residual blocks → two ×2 transposed convolutions (decoder) → ⊕ input image →
    3×3 convolution → tanh.  ``width`` is the first convolution's channel count (64 in the paper).
    """

    def __init__(self, image_size: int, width: int = 64, residual_blocks: int = 3) -> None:
        super().__init__()
        self.label_encoder = LabelEncoder(image_size)
        w = width
        self.encoder = nn.Sequential(
            *_norm_relu(nn.Conv2d(6, w, 7, padding=3), w),
            *_norm_relu(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), 2 * w),
            *_norm_relu(nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), 4 * w),
            *[_Residual(4 * w) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(
            *[_Residual(4 * w) for _ in range(residual_blocks)],
            *_norm_relu(nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1, bias=False), 2 * w),
            *_norm_relu(nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), w))
        self.out = nn.Sequential(nn.Conv2d(w + 3, 3, 3, padding=1, bias=False), nn.Tanh())

    def forward(self, image: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.label_encoder(r), image], dim=1)
        return self.out(torch.cat([self.decoder(self.encoder(mixed)), image], dim=1))


class PatchDiscriminator(nn.Module):
    """Five spectral-normalised stride-2 4×4 convolutions (LeakyReLU 0.01), then a convolution over
    the whole remaining map giving ``num_classes`` label scores and one real/fake score."""

    def __init__(self, image_size: int, num_classes: int, width: int = 64, spectral: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c_out, size = 3, width, image_size
        norm = spectral_norm if spectral else (lambda conv: conv)  # plain: only to count FLOPs quickly
        for _ in range(DISCRIMINATOR_DEPTH):
            layers += [norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.01)]
            c_in, c_out, size = c_out, 2 * c_out, size // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, num_classes + 1, size, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image)).flatten(1)


def check_image_size(image_size: int) -> None:
    """The generator needs a multiple of 16 (label grid, two down/up-samplings); the discriminator ≥ 32."""
    if image_size < 32 or image_size % 16:
        raise PluginError(f"prosgan needs square images whose side is a multiple of 16 and at least 32 "
                          f"(224 in the paper, 32 for shapes); got {image_size}")


# --- schedules --------------------------------------------------------------------------

def prototype_lr_factor(step: int, total_steps: int) -> float:
    """×0.1 after half and after three quarters of the prototype steps (15,000 / 22,500 of 30,000)."""
    return 0.1 ** sum(step >= m * total_steps for m in PROTOTYPE_MILESTONES)


def gan_lr_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """Constant for ``epochs − decay_epochs`` epochs, then linear towards 0: ``1 − max(0, e + 1 − E_c)/(E_d + 1)``
    at 0-based epoch ``e`` (E_c = 50, E_d = 50 in the paper)."""
    return 1.0 - max(0, epoch + 1 - (epochs - decay_epochs)) / (decay_epochs + 1)


# --- the attack ---------------------------------------------------------------------------

def _generator_flops(image_size: int, width: int, residual_blocks: int) -> int:
    """Forward FLOPs of :class:`AdvGenerator` on one image."""
    return class_flops(AdvGenerator, (image_size, width, residual_blocks), (1, 3, image_size, image_size),
                       (1, SEMANTIC_DIM))


def _discriminator_flops(image_size: int, num_classes: int, width: int) -> int:
    """Forward FLOPs of :class:`PatchDiscriminator` on one image, counted on the plain network: the
    spectral norm's power iteration decomposes slowly on the meta device (≈ 0.6 s per count on a
    CPU) and its matrix-vector products are not among the counted operations anyway."""
    return class_flops(PatchDiscriminator, (image_size, num_classes, width, False), (1, 3, image_size, image_size))


class ProSGAN(Attack):
    """Targeted generative attack: one generator pass maps (query, target label) to an adversarial image.

    Paper: X. Wang, Z. Zhang, B. Wu, F. Shen, G. Lu. *Prototype-supervised Adversarial Network
    for Targeted Attack of Deep Hashing*. CVPR 2021 (spec §2.3).

    ``prepare`` (once per attacked model) trains PrototypeNet on labels drawn from the distinct
    database labels against the model's training codes (:func:`prototype_loss`); the prototype
    of a target ``t`` is ``p = sign(h(t))``.  It then trains the generator G and the
    spectral-norm discriminator D (LSGAN targets ``[y, 0]`` for real, ``[t, 1]`` for fake) on the
    training images x (labels y, random targets t, images in [−1, 1]) with

        L_G = w_rec·MSE(G(x), x) + w_hash·(1 − mean(f((G(x)+1)/2) ⊙ p)) + w_gan·MSE(D(G(x)), [t, 0])
        L_D = ½·[MSE(D(x), [y, 0]) + MSE(D(G(x)), [t, 1])]     (every ``d_every``-th batch)

    At attack time ``x_adv = (G(2x − 1, r(t)) + 1)/2`` for the query's target label ``t``.  There
    is no ε-ball (only the reconstruction term limits the change), so the attack is unbounded;
    setting ``epsilon`` clips ``x_adv`` to ``[x − ε, x + ε]``, in training and at attack time,
    and makes it bounded.  The networks follow the image side S (a multiple of 16, ≥ 32): the
    label map starts on an (S/16)² grid and the discriminator's last convolution spans its final
    (S/32)² map (14² and 7² at 224, as in the paper; 2² and 1² at 32).

    Parameters (defaults are the paper's): ``epsilon`` None (unbounded; a number clips),
    ``batch_size`` 128 (queries per forward pass; no effect on the result),
    ``prototype_epochs`` 100 × ``prototype_steps`` 300, ``prototype_batch_size`` 64,
    ``prototype_lr`` 1e-4 (×0.1 after 1/2 and 3/4 of the steps), ``prototype_hidden`` 4096;
    ``epochs`` 100 GAN epochs, the last ``decay_fraction`` 0.5 of them with the learning rate
    decaying linearly towards 0, ``train_batch_size`` 24, ``lr`` 1e-4 (Adam β = (0.5, 0.999) for
    all three networks), ``rec_weight`` 100 (FLICKR-25K; ProS-GAN's code uses 50 for NUS-WIDE and
    MS-COCO, which the paper grids set per dataset), ``hash_weight`` 5, ``gan_weight`` 1,
    ``d_every`` 3, ``width`` 64 (channels of the first generator and discriminator convolution;
    the label encoder keeps 128),
    ``residual_blocks`` 3 (in the encoder and again in the decoder).
    """

    name = "prosgan"
    description = "ProS-GAN: prototype-supervised generator, one forward pass per query (unbounded)"
    paper = ("Wang, Zhang, Wu, Shen, Lu. Prototype-supervised Adversarial Network for Targeted Attack "
             "of Deep Hashing. CVPR 2021")
    targeted = True

    class Params(AttackParams):
        epsilon: float | None = Field(None, gt=0, le=1, description="optional L∞ clip; None = unbounded (paper)")
        prototype_epochs: int = Field(100, gt=0, le=MAX_EPOCHS)
        prototype_steps: int = Field(300, gt=0, le=MAX_ITERATIONS, description="PrototypeNet steps per epoch")
        prototype_batch_size: int = Field(64, gt=0, le=MAX_BATCH_SIZE)
        prototype_lr: float = Field(1e-4, gt=0)
        prototype_hidden: int = Field(4096, gt=0, le=MAX_WIDTH, description="PrototypeNet hidden width")
        epochs: int = Field(100, gt=0, le=MAX_EPOCHS, description="GAN epochs over the training images")
        decay_fraction: float = Field(0.5, ge=0, le=1, description="share of the epochs (the last ones) whose "
                                      "learning rate decays linearly")
        train_batch_size: int = Field(24, gt=0, le=MAX_BATCH_SIZE)
        lr: float = Field(1e-4, gt=0)
        rec_weight: float = Field(100.0, ge=0)
        hash_weight: float = Field(5.0, ge=0)
        gan_weight: float = Field(1.0, ge=0)
        d_every: int = Field(3, gt=0, le=MAX_ITERATIONS, description="update D on every d_every-th batch")
        width: int = Field(64, gt=0, le=MAX_WIDTH)
        residual_blocks: int = Field(3, ge=0, le=64)

    def __init__(self, params: AttackParams | None = None) -> None:
        super().__init__(params)
        self._cache: tuple[Any, ...] | None = None

    @property
    def bounded(self) -> bool:  # type: ignore[override]  # depends on whether the clip is set
        return self.params.epsilon is not None

    # -- helpers --------------------------------------------------------------------------

    def _build(self, num_classes: int, bits: int, image_size: int, seed: int = 0) -> tuple[nn.Module, ...]:
        """(ProsganPrototypeNet, generator, discriminator), initialised from a CPU stream seeded with ``seed``
        (the global generator is left untouched)."""
        check_image_size(image_size)
        p = self.params
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return (ProsganPrototypeNet(num_classes, bits, p.prototype_hidden),
                    AdvGenerator(image_size, p.width, p.residual_blocks),
                    PatchDiscriminator(image_size, num_classes, p.width))

    def _adversarial(self, generator: AdvGenerator, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``(G(2x − 1, r) + 1)/2``, clipped to the ε-ball when ``epsilon`` is set; in [0, 1]."""
        x_adv = (generator(2 * x - 1, r) + 1) / 2
        return x_adv if self.params.epsilon is None else project(x_adv, x, self.params.epsilon)

    # -- prepare ----------------------------------------------------------------------------

    def prepare_flops(self, sizes: PrepareSizes) -> int | None:
        """PrototypeNet steps, then per GAN epoch and training image: G forward + backward, the
        attacked model's forward + backward on G's output, D on the fake for G's step (forward +
        backward) and D's own step on real and fake every ``d_every``-th batch."""
        if sizes.classes is None:
            return None
        p, side, classes = self.params, sizes.image_size, sizes.classes
        prototype = prototype_training_flops(ProsganPrototypeNet, (classes, sizes.bits, p.prototype_hidden),
                                             classes=classes, bits=sizes.bits, batch=p.prototype_batch_size,
                                             steps=p.prototype_epochs * p.prototype_steps, train=sizes.train)
        g, d = _generator_flops(side, p.width, p.residual_blocks), _discriminator_flops(side, classes, p.width)
        per_image = 3 * g + 3 * sizes.model_forward_flops + 3 * d + 3 * 2 * d / p.d_every
        return prototype + int(p.epochs * sizes.train * per_image)

    def prepare(self, model: nn.Module, ctx: AttackContext) -> dict[str, torch.Tensor]:
        if ctx.train_data is None:
            raise PluginError("prosgan trains its generator on the training images, but the harness gave none")
        device = ctx.device
        image_size = int(ctx.train_data.dataset.image_size)
        num_classes, bits = ctx.train_labels.shape[1], ctx.train_codes.shape[1]
        try:
            targets = target_candidates(ctx.db_labels)
        except ValueError:
            raise PluginError("prosgan: no database item has a label, so there is no target label to train on") from None
        init_seed = int(torch.randint(2**31 - 1, (1,), generator=ctx.generator))
        prototype, generator, discriminator = (net.to(device) for net in self._build(num_classes, bits, image_size, init_seed))
        model.eval()
        reporter = ctx.reporter or Reporter()

        proto_history = self._train_prototype(prototype, targets, ctx, reporter)
        prototype.eval().requires_grad_(False)
        gan_history = self._train_gan(model, prototype, generator, discriminator, targets, ctx, reporter)

        state = {f"prototype.{k}": v for k, v in prototype.state_dict().items()}
        state.update({f"generator.{k}": v for k, v in generator.state_dict().items()})
        state["history.prototype_loss"] = torch.tensor(proto_history)
        for name in gan_history[0] if gan_history else ():
            state[f"history.{name}"] = torch.tensor([epoch[name] for epoch in gan_history])
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def _train_prototype(self, net: ProsganPrototypeNet, targets: torch.Tensor, ctx: AttackContext,
                         reporter: Reporter) -> list[float]:
        """Adam on label batches drawn uniformly from ``targets``; returns the mean loss per epoch."""
        p = self.params
        optimizer = torch.optim.Adam(net.parameters(), lr=p.prototype_lr, betas=BETAS)
        codes, labels = ctx.train_codes.float(), ctx.train_labels.float()
        total = p.prototype_epochs * p.prototype_steps
        history = []
        net.train()
        with reporter.task("prosgan prototype", total) as advance:
            for epoch in range(p.prototype_epochs):
                running = 0.0
                for i in range(p.prototype_steps):
                    for group in optimizer.param_groups:
                        group["lr"] = p.prototype_lr * prototype_lr_factor(epoch * p.prototype_steps + i, total)
                    t = sample_targets(targets, p.prototype_batch_size, ctx.generator)
                    _, h, label_pred = net(t)
                    loss = prototype_loss(h, label_pred, t, codes, labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    running += float(loss.detach())
                    advance(1)
                if not math.isfinite(running):
                    raise PluginError(f"prosgan: PrototypeNet loss is not finite at epoch {epoch + 1}")
                history.append(running / p.prototype_steps)
        return history

    def _train_gan(self, model: nn.Module, prototype: ProsganPrototypeNet, generator: AdvGenerator,
                   discriminator: PatchDiscriminator, targets: torch.Tensor, ctx: AttackContext,
                   reporter: Reporter) -> list[dict[str, float]]:
        """Alternating D / G Adam steps over the training images; returns the per-epoch mean losses."""
        p = self.params
        opt_g = torch.optim.Adam(generator.parameters(), lr=p.lr, betas=BETAS)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=p.lr, betas=BETAS)
        generator.train()
        discriminator.train()
        batch_index = [0]  # position in the epoch: D steps on every d_every-th batch
        last_d_loss = [torch.zeros(())]
        decay_epochs = round(p.epochs * p.decay_fraction)

        def before_epoch(epoch: int) -> None:
            batch_index[0] = 0
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = p.lr * gan_lr_factor(epoch, p.epochs, decay_epochs)

        def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            t = sample_targets(targets, x.shape[0], ctx.generator)
            with torch.no_grad():
                r, h, _ = prototype(t)
                code = to_binary(h).float()
            real = 2 * x - 1
            adv = self._adversarial(generator, x, r)
            fake = 2 * adv - 1
            zeros, ones = torch.zeros_like(t[:, :1]), torch.ones_like(t[:, :1])
            if batch_index[0] % p.d_every == 0:
                discriminator.requires_grad_(True)
                d_loss = 0.5 * (F.mse_loss(discriminator(real), torch.cat([y, zeros], 1))
                                + F.mse_loss(discriminator(fake.detach()), torch.cat([t, ones], 1)))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                last_d_loss[0] = d_loss.detach()
            batch_index[0] += 1
            discriminator.requires_grad_(False)
            rec = F.mse_loss(fake, real)
            hash_loss = 1 - (model(adv) * code).mean()
            gan = F.mse_loss(discriminator(fake), torch.cat([t, zeros], 1))
            g_loss = p.rec_weight * rec + p.hash_weight * hash_loss + p.gan_weight * gan
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            return {"g_loss": g_loss.detach(), "rec_loss": rec.detach(), "hash_loss": hash_loss.detach(),
                    "gan_loss": gan.detach(), "d_loss": last_d_loss[0]}

        history = run_epochs(ctx.train_data, step, epochs=p.epochs, batch_size=p.train_batch_size, augment=False,
                             generator=ctx.generator, device=ctx.device, before_epoch=before_epoch,
                             reporter=reporter, description="prosgan GAN")
        generator.eval()
        return history

    # -- attack -----------------------------------------------------------------------------

    def _networks(self, ctx: AttackContext, image_size: int,
                  device: torch.device) -> tuple[ProsganPrototypeNet, AdvGenerator]:
        key = (id(ctx.state), image_size, str(device))
        if self._cache is None or self._cache[0] != key:
            prototype, generator, _ = self._build(ctx.db_labels.shape[1], ctx.db_codes.shape[1], image_size)
            for prefix, net in (("prototype.", prototype), ("generator.", generator)):
                weights = {k[len(prefix):]: v for k, v in ctx.state.items() if k.startswith(prefix)}
                try:
                    net.load_state_dict(weights)
                except RuntimeError as exc:
                    raise PluginError(f"prosgan: the prepared state does not fit this attack's settings "
                                      f"({prefix.rstrip('.')}): {str(exc).splitlines()[0]}") from None
            self._cache = (key, prototype.to(device).eval(), generator.to(device).eval())
        return self._cache[1], self._cache[2]

    def perturb_flops(self, sizes: PrepareSizes) -> int | None:
        """One generator pass per query, and the harness encoding its output."""
        p = self.params
        return _generator_flops(sizes.image_size, p.width, p.residual_blocks) + sizes.model_forward_flops

    @torch.no_grad()
    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        if target is None:
            raise PluginError("prosgan is a targeted attack and needs one target label per query")
        prototype, generator = self._networks(ctx, x.shape[-1], x.device)
        r = prototype(target.to(x.device, torch.float32))[0]
        return self._adversarial(generator, x, r)
