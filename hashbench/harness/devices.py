"""Devices that ``hashbench plan --device NAME`` can price a grid for, before renting one.

Each row gives the vendor's **peak** dense throughput (no 2:4 structured sparsity; spec sheets
often print the sparse figure, twice the dense one) in TFLOPS:

- ``fp32``: the non-tensor-core FP32 rate, used for stages that run in fp32.  On Ampere and later
  cuDNN may run fp32 convolutions on TF32 tensor cores (PyTorch allows it by default), so for
  convolutional backbones the fp32 estimate leans long;
- ``bf16`` / ``fp16``: the tensor-core rate with FP32 accumulation, used for the stages that
  ``--amp`` autocasts (train and defend; prepare and attack too with ``--amp-attacks``).

A network never runs at peak: data loading, small layers, memory-bound ops (norms, activations)
and kernel launches take their share.  ``plan`` multiplies every peak by one utilisation factor,
``achieved_fraction`` (:data:`ACHIEVED_FRACTION`, 0.4 for the GPUs; override with
``--achieved-fraction``) and shows it in the table's footer.  The ``cpu`` row is not a spec sheet:
it is this machine's measured matrix-multiply rate, already an achieved rate (fraction 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from hashbench.api.registry import unknown_name_message
from hashbench.errors import UserError

#: the share of peak throughput a hashing network is assumed to reach on a GPU
ACHIEVED_FRACTION = 0.4
#: ``--device`` values that mean a device of this machine (recorded timings, then measured rates)
LOCAL = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class DeviceSpec:
    """One row of :data:`DEVICES`: peak dense TFLOPS per precision (``None``: no such rate)."""

    name: str
    label: str
    fp32: float | None
    bf16: float | None
    fp16: float | None
    source: str
    achieved_fraction: float = ACHIEVED_FRACTION
    measured: bool = False  # the rates are measured on this machine at plan time, not read from a sheet


DEVICES: dict[str, DeviceSpec] = {
    spec.name: spec
    for spec in (
        # H200 SXM: same GH100 compute as the H100 SXM; BF16/FP16 tensor 1,979 TFLOPS with sparsity
        DeviceSpec("h200", "NVIDIA H200 SXM 141GB", 67.0, 989.5, 989.5,
                   "NVIDIA H200 Tensor Core GPU datasheet (SXM): FP32 67, BF16/FP16 tensor 1,979 sparse"),
        DeviceSpec("h100", "NVIDIA H100 SXM5 80GB", 67.0, 989.5, 989.5,
                   "NVIDIA H100 Tensor Core GPU datasheet (SXM): FP32 67, BF16/FP16 tensor 1,979 sparse"),
        DeviceSpec("a100", "NVIDIA A100 SXM4 80GB", 19.5, 312.0, 312.0,
                   "NVIDIA A100 Tensor Core GPU datasheet (SXM): FP32 19.5, BF16/FP16 tensor 312 dense"),
        # Volta has FP16 tensor cores but no BF16: `--amp bf16` cannot be priced on it
        DeviceSpec("v100", "NVIDIA V100 SXM2", 15.7, None, 125.0,
                   "NVIDIA Tesla V100 datasheet (SXM2): FP32 15.7, FP16 tensor 125; no BF16"),
        DeviceSpec("rtx4090", "NVIDIA GeForce RTX 4090", 82.6, 165.2, 165.2,
                   "NVIDIA Ada Lovelace GPU architecture whitepaper (RTX 4090): FP32 82.6, "
                   "BF16/FP16 tensor with FP32 accumulate 165.2 dense"),
        DeviceSpec("l40s", "NVIDIA L40S", 91.6, 362.05, 362.05,
                   "NVIDIA L40S datasheet: FP32 91.6, BF16/FP16 tensor 362.05 dense (733 sparse)"),
        DeviceSpec("cpu", "this machine's CPU", None, None, None,
                   "measured: fp32 matrix multiply on this machine at plan time", achieved_fraction=1.0,
                   measured=True),
    )
}


@dataclass(frozen=True)
class Rate:
    """The throughput a plan is priced at: peak TFLOPS per precision × ``achieved_fraction``."""

    name: str
    label: str
    tflops: dict[str, float | None]
    achieved_fraction: float
    source: str
    gpu: bool = True

    def flops_per_s(self, amp: str | None = None) -> float:
        """Achieved FLOP/s for a stage autocast to ``amp`` (``None``: fp32)."""
        precision = amp or "fp32"
        peak = self.tflops.get(precision)
        if peak is None:
            raise UserError(f"device '{self.name}' has no {precision} rate ({self.source}); "
                            f"plan it without --amp {precision} or with another precision")
        return peak * 1e12 * self.achieved_fraction

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "label": self.label, "peak_tflops": dict(self.tflops),
                "achieved_fraction": self.achieved_fraction, "source": self.source}


def _fraction(value: float | None, default: float) -> float:
    if value is None:
        return default
    if not 0 < value <= 1:
        raise UserError(f"--achieved-fraction: {value} is not in (0, 1] (the share of peak a network reaches)")
    return value


def device_rate(name: str, achieved_fraction: float | None = None) -> Rate:
    """The :class:`Rate` of a :data:`DEVICES` row; an unknown name is a :class:`UserError` with a suggestion."""
    spec = DEVICES.get(name.lower())
    if spec is None:
        choices = [*DEVICES, *(n for n in LOCAL if n not in DEVICES)]
        raise UserError(f"--device: {unknown_name_message('device', name, choices)}")
    fraction = _fraction(achieved_fraction, spec.achieved_fraction)
    if spec.measured:
        from hashbench.harness.cost import matmul_flops_per_s  # torch: the CLI imports this module at start

        measured = matmul_flops_per_s("cpu") / 1e12  # autocast on a CPU: no separate rate is measured
        return Rate(spec.name, spec.label, {p: measured for p in PRECISIONS}, fraction, spec.source, gpu=False)
    return Rate(spec.name, spec.label, {"fp32": spec.fp32, "bf16": spec.bf16, "fp16": spec.fp16}, fraction,
                spec.source)


def custom_rate(tflops: float, achieved_fraction: float | None = None) -> Rate:
    """A device given only by its peak (``--tflops X``), used for every stage whatever its precision."""
    if not tflops > 0:
        raise UserError(f"--tflops: {tflops} is not a positive number of TFLOPS")
    fraction = _fraction(achieved_fraction, ACHIEVED_FRACTION)
    return Rate(f"--tflops {tflops:g}", f"a device of {tflops:g} peak TFLOPS", {p: tflops for p in PRECISIONS},
                fraction, "--tflops (one peak rate for every precision)")
