"""CPU detection and the int8 types chosen from it."""

from __future__ import annotations

from modelport.optimize.hardware import choose_types, detect_cpu

AVX2 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
VNNI = "model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512bw avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp sha2\n"


def test_detects_instruction_sets():
    cpu = detect_cpu(AVX2, arch="x86_64")
    assert cpu.avx2 and not cpu.vnni and not cpu.avx512 and cpu.model == "AMD EPYC 7B13"
    cpu = detect_cpu(VNNI, arch="x86_64")
    assert cpu.vnni and cpu.avx512
    cpu = detect_cpu(ARM, arch="aarch64")
    assert cpu.is_arm and cpu.arm_dot
    assert "VNNI" in detect_cpu(VNNI, arch="x86_64").summary()


def test_this_machine_is_detected():
    cpu = detect_cpu()
    assert cpu.arch
    assert isinstance(cpu.to_dict()["vnni"], bool)


def test_choices_follow_the_hardware():
    avx2 = detect_cpu(AVX2, arch="x86_64")
    static = choose_types(avx2, "static")
    assert (static.activation_type, static.weight_type, static.reduce_range) == (
        "uint8",
        "int8",
        True,
    )
    dyn = choose_types(avx2, "dynamic")
    assert dyn.reduce_range is False and dyn.per_channel  # measured, not from the table
    assert any("no int8 dot-product" in r for r in dyn.reasons)
    vnni = choose_types(detect_cpu(VNNI, arch="x86_64"), "static")
    assert vnni.reduce_range is False and vnni.activation_type == "uint8"
    arm = choose_types(detect_cpu(ARM, arch="aarch64"), "static")
    assert (arm.activation_type, arm.weight_type) == ("int8", "int8")
    assert choose_types(detect_cpu(ARM, arch="aarch64"), "dynamic").activation_type == "uint8"
