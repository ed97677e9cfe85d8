"""What the CPU can do for int8, and the quantization types that follow from it.

ONNX Runtime's own table (``quantize_static`` docstring): x86 without VNNI -> U8 activations, S8
weights, reduce_range; x86 with VNNI -> U8/S8 without reduce_range; ARM -> S8/S8. We follow that
table, except: per-channel weights always, and no reduce_range for dynamic quantization. The
reasons printed to the user say what was detected on their CPU; a figure appears in a reason only
with its source ("measured elsewhere: ..."), since the report's own numbers are the ones measured
on the user's machine.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

__all__ = ["CpuProfile", "QuantChoice", "choose_types", "detect_cpu"]


@dataclass(frozen=True)
class CpuProfile:
    """Instruction sets that matter for int8 kernels.

    arch: "x86_64", "arm64" or what ``platform.machine()`` says.
    model: the CPU's name when known.
    flags: the instruction-set flags found (avx2, avx512f, avx512_vnni, avx_vnni, amx, asimddp...).
    """

    arch: str
    model: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        """x86 int8 dot-product instructions (AVX512-VNNI or AVX-VNNI), or AMX."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def arm_dot(self) -> bool:
        """ARM int8 dot product (sdot/udot)."""
        return bool(self.flags & {"asimddp", "dotprod", "i8mm"})

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ("arm64", "aarch64") or self.arch.lower().startswith("arm")

    def summary(self) -> str:
        isa = [
            n
            for n, ok in (
                ("AVX2", self.avx2),
                ("AVX-512", self.avx512),
                ("VNNI", self.vnni),
                ("ARM dot product", self.arm_dot),
            )
            if ok
        ]
        return f"{self.arch} {self.model}".strip() + f" [{', '.join(isa) or 'no int8 dot product'}]"

    def to_dict(self) -> dict[str, object]:
        return {
            "arch": self.arch,
            "model": self.model,
            "avx2": self.avx2,
            "avx512": self.avx512,
            "vnni": self.vnni,
            "arm_dot": self.arm_dot,
        }


_FLAGS_OF_INTEREST = {
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimddp",
    "dotprod",
    "i8mm",
    "fma",
}


def detect_cpu(cpuinfo: str | None = None, arch: str | None = None) -> CpuProfile:
    """The CPU's profile, from /proc/cpuinfo on Linux (``cpuinfo``/``arch`` may be given for tests;
    parsed by ``runtime.read_cpuinfo``, modelport's one reader of it).

    Elsewhere: Apple silicon counts as ARM with dot product; other systems report no flags.
    """
    from ..runtime.cpu import read_cpuinfo

    arch = arch or platform.machine() or "unknown"
    info = read_cpuinfo(cpuinfo)
    flags = set(info.flags & _FLAGS_OF_INTEREST)
    if not (cpuinfo or info.flags) and platform.system() == "Darwin" and arch == "arm64":
        flags = {"asimddp"}
    return CpuProfile(arch=arch, model=info.model, flags=frozenset(flags))


@dataclass(frozen=True)
class QuantChoice:
    """Types and options chosen for a CPU, with the reason for each."""

    activation_type: str  # "uint8" | "int8"
    weight_type: str  # "int8" | "uint8"
    per_channel: bool
    reduce_range: bool
    reasons: tuple[str, ...]


# Where the figures that back a choice were measured. A reason cites a figure only with its
# source, as "measured elsewhere: ..."; what is measured on this machine is in the report itself.
MINILM_SOURCE = (
    "benchmarks/results/quantize_minilm.json, all-MiniLM-L6-v2 on a 2-core Xeon with AVX-512 VNNI"
)


def choose_types(cpu: CpuProfile, mode: str) -> QuantChoice:
    """Activation/weight types, per-channel and reduce_range for ``mode`` ("dynamic"/"static").

    Dynamic quantization always quantizes activations to uint8 (ORT's DynamicQuantizeLinear);
    only the weight type is a choice there. Each reason says what was detected on this CPU and
    which rule followed; figures are cited only with where they were measured.
    """
    reasons: list[str] = []
    detected = f"detected {cpu.summary()}"
    if cpu.is_arm:
        act, wt, rr = "int8", "int8", False
        reasons.append(
            f"{detected}: ARM, so S8 activations and S8 weights (ONNX Runtime's table)"
            + (
                "; dot-product instructions present"
                if cpu.arm_dot
                else "; no dot-product instructions: int8 may not be faster than fp32 here"
            )
        )
    elif cpu.vnni:
        act, wt, rr = "uint8", "int8", False
        reasons.append(
            f"{detected}: x86 with VNNI, so U8 activations, S8 weights, full 8-bit range "
            "(ONNX Runtime's table: VNNI's dot product does not saturate)"
        )
    else:
        act, wt = "uint8", "int8"
        reasons.append(
            f"{detected}: x86 without VNNI, so U8 activations, S8 weights "
            "(ONNX Runtime's table: U8S8 is the fast path of its x86 int8 kernels)"
        )
        if mode == "static":
            rr = True
            reasons.append(
                "reduce_range=True: 7-bit weights avoid VPMADDUBSW saturation "
                "(ONNX Runtime's recommendation for AVX2/AVX-512 without VNNI)"
            )
        else:
            rr = False
            reasons.append(
                "reduce_range=False for dynamic: it halves the weights' resolution and "
                "ONNX Runtime's dynamic MatMulInteger path does not need it to avoid saturation"
            )
        if not cpu.avx2 and not cpu.avx512:
            reasons.append("no AVX2 detected: int8 kernels are unlikely to beat fp32 on this CPU")
    if mode == "dynamic":
        act = "uint8"
    per_channel = True
    reasons.append(
        "per-channel weights: one scale per output channel keeps small channels accurate "
        f"(measured elsewhere: {MINILM_SOURCE}: dynamic int8 with the attention-score MatMuls "
        "quantized too, embedding cosine 0.967 per-tensor (ONNX Runtime's defaults) vs 0.993 "
        "per-channel)"
    )
    if not cpu.vnni and not cpu.arm_dot:
        reasons.append(
            "warning: no int8 dot-product instructions detected (VNNI / ARM dotprod): int8 can "
            "be slower than fp32; the latency measured on this machine in the report decides"
        )
    return QuantChoice(act, wt, per_channel, rr, tuple(reasons))
