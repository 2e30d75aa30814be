"""What ``hashbench plan`` shows beyond the per-kind estimate: a price on another device, the
totals of each member of a union grid, and the bytes the artifacts will take.

Two ways to turn FLOPs into seconds:

- this machine (``--device auto|cpu|cuda``): :func:`hashbench.harness.cost.estimate_plan`, from recorded
  timings, else the measured matmul rate;
- a device from :mod:`hashbench.harness.devices` (``--device h200``) or ``--tflops X``: every stage to run
  takes FLOPs / (peak rate of its precision × achieved fraction), basis ``rated``; a stage
  autocast by ``--amp`` (its spec has ``amp``) is priced at that precision's rate.

Disk: :func:`hashbench.harness.cost.stage_bytes` of every stage not yet in the store.  A union grid's
total counts a stage that several members share once, so it is at most the sum of its members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hashbench.errors import UserError
from hashbench.harness.cost import KindEstimate, estimate_plan, stage_bytes, stage_flops, stages_by_kind
from hashbench.harness.devices import LOCAL, Rate, custom_rate, device_rate
from hashbench.harness.executors.worker import resolve_device
from hashbench.harness.plan import Plan
from hashbench.harness.stages.spec import split_stage
from hashbench.harness.store import ArtifactStore
from hashbench.harness.timings import device_label, read_timings

#: one plan (the whole, or one member) → its rows, one per stage kind
Estimator = Callable[[Plan], list[KindEstimate]]


def resolve_rate(device: str, tflops: float | None, achieved_fraction: float | None) -> Rate | None:
    """The rate ``plan`` prices at, or ``None`` for a device of this machine (``auto``, ``cpu``, ``cuda``).

    Raises :class:`~hashbench.errors.UserError` for an unknown name (with a suggestion) and for
    options that do not go together.
    """
    if tflops is not None:
        if device != "auto":
            raise UserError("--tflops prices a device of that peak rate: give it or --device NAME, not both")
        return custom_rate(tflops, achieved_fraction)
    if device.lower() in LOCAL:
        if achieved_fraction is not None:
            raise UserError("--achieved-fraction applies to --device NAME from the device table or to --tflops; "
                            f"'{device}' is priced from this machine's own timings and measured rate")
        return None
    return device_rate(device, achieved_fraction)


def estimator(store: ArtifactStore, device: str, rate: Rate | None) -> tuple[Estimator, str, str]:
    """How ``plan`` estimates: (plan → rows, the device's label, the unit of its hours).

    With ``rate`` every stage is rated; without, :func:`~hashbench.harness.cost.estimate_plan` for
    ``device`` of this machine (its recorded timings first).
    """
    if rate is not None:
        return (lambda p: rated_estimates(p, store, rate)), rate.label, "GPU-hours" if rate.gpu else "hours"
    torch_device = resolve_device(device.lower())
    history = read_timings(store)
    unit = "GPU-hours" if torch_device.type == "cuda" else "hours"
    return (lambda p: estimate_plan(p, store, torch_device, history)), device_label(torch_device), unit


def rated_estimates(plan: Plan, store: ArtifactStore, rate: Rate) -> list[KindEstimate]:
    """Per stage kind, like :func:`~hashbench.harness.cost.estimate_plan`, with seconds = FLOPs / ``rate``."""
    out = []
    for kind, of_kind, todo in stages_by_kind(plan, store):
        flops: int | None = 0
        seconds: float | None = 0.0
        for stage in todo:
            f = stage_flops(stage, plan.sizes.get(split_stage(stage).key))
            flops = None if f is None or flops is None else flops + f
            seconds = None if f is None or seconds is None else seconds + f / rate.flops_per_s(getattr(stage.spec, "amp", None))
        out.append(KindEstimate(kind, len(of_kind), len(of_kind) - len(todo), len(todo), flops,
                                seconds if todo else 0.0, "rated" if todo and seconds is not None else None))
    return out


@dataclass
class Bytes:
    """Bytes the stages to run will write: the sum of the known sizes, and how many are unknown."""

    known: int = 0
    unknown: int = 0

    def add(self, size: int | None) -> None:
        if size is None:
            self.unknown += 1
        else:
            self.known += size


def bytes_by_kind(plan: Plan, store: ArtifactStore) -> dict[str, Bytes]:
    """:func:`~hashbench.harness.cost.stage_bytes` summed per stage kind over the stages not yet in ``store``."""
    out: dict[str, Bytes] = {}
    for stage in plan.stages():
        entry = out.setdefault(stage.kind, Bytes())
        if not store.exists(stage.kind, stage.key):
            entry.add(stage_bytes(stage, plan.sizes.get(split_stage(stage).key)))
    return out


def member_plan(plan: Plan, member: str) -> Plan:
    """The part of ``plan`` that member grid ``member`` defines: its cells, the same sizes and options."""
    by_id = {cell.cell_id: cell for cell in plan.cells}
    cells = [by_id[i] for i in dict.fromkeys(plan.member_cells.get(member, [])) if i in by_id]
    return Plan(member, plan.profile_name, cells, datasets=plan.datasets, unavailable=plan.unavailable,
                members=[member], options=plan.options, sizes=plan.sizes)


def _sum(values: list[Any]) -> Any:
    return None if any(v is None for v in values) else sum(values)


@dataclass
class Totals:
    """One line of the per-grid totals: stages, what is left to run, its FLOPs, seconds and bytes."""

    grid: str
    stages: int
    to_run: int
    flops: int | None
    estimated_s: float | None
    bytes: Bytes = field(default_factory=Bytes)

    @classmethod
    def of(cls, grid: str, rows: list[KindEstimate], sizes: dict[str, Bytes]) -> Totals:
        todo = [r for r in rows if r.to_run]
        return cls(grid, sum(r.total for r in rows), sum(r.to_run for r in rows), _sum([r.flops for r in todo]),
                   _sum([r.estimated_s for r in todo]),
                   Bytes(sum(b.known for b in sizes.values()), sum(b.unknown for b in sizes.values())))

    def as_dict(self) -> dict[str, Any]:
        return {"grid": self.grid, "stages": self.stages, "to_run": self.to_run, "flops": self.flops,
                "estimated_s": self.estimated_s, "estimated_hours": hours(self.estimated_s),
                "bytes": self.bytes.known, "bytes_unknown": self.bytes.unknown}


def member_totals(plan: Plan, store: ArtifactStore, estimate: Estimator) -> list[Totals]:
    """Totals of each member grid of a union, each member planned alone (empty for a single grid)."""
    if len(plan.members) < 2:
        return []
    out = []
    for member in plan.members:
        sub = member_plan(plan, member)
        out.append(Totals.of(member, estimate(sub), bytes_by_kind(sub, store)))
    return out


def total_row(rows: list[KindEstimate], sizes: dict[str, Bytes]) -> dict[str, Any]:
    """The plan table's total line (the union's, for a union grid: shared stages once), as ``plan --json`` gives it."""
    known = [r.estimated_s for r in rows]
    seconds = None if None in known else sum(known)
    return {"stage": "total", "total": sum(r.total for r in rows), "cached": sum(r.cached for r in rows),
            "to_run": sum(r.to_run for r in rows),
            "flops": None if any(r.flops is None for r in rows) else sum(r.flops for r in rows),
            "estimated_s": seconds,
            "basis": "+".join(sorted({p for r in rows if r.basis for p in r.basis.split("+")})) or None,
            "estimated_hours": hours(seconds), "bytes": sum(b.known for b in sizes.values()),
            "bytes_unknown": sum(b.unknown for b in sizes.values())}


def rate_caption(rate: Rate, amp: str | None, amp_attacks: bool) -> str:
    """The plan table's footer for a rated device: the rates, the achieved fraction, the source."""
    def tf(precision: str) -> str:
        peak = rate.tflops.get(precision)
        return "none" if peak is None else f"{peak:g}"

    peaks = f"fp32 {tf('fp32')}"
    if amp:
        kinds = "train, defend, prepare, attack, craft" if amp_attacks else "train, defend"
        peaks += f"; {amp} {tf(amp)} for the stages --amp autocasts ({kinds})"
    return (f"estimates for {rate.label} ({rate.name}); basis: rated = FLOPs / (peak TFLOPS [{peaks}] "
            f"× achieved fraction {rate.achieved_fraction:g}): peak figures, which networks reach only a "
            f"fraction of; source: {rate.source}")


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def format_hours(seconds: float | None) -> str:
    """``≈ 1,234`` / ``12.3`` / ``0.05`` hours, for the plan's hour column; ``unknown`` for None."""
    h = hours(seconds)
    if h is None:
        return "unknown"
    if h >= 100:
        return f"{h:,.0f}"
    if 0 < h < 0.01:
        return "< 0.01"
    return f"{h:.1f}" if h >= 1 else f"{h:.2f}"
