"""runtime.read_cpuinfo: modelport's one reader of /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

from modelport.optimize.hardware import detect_cpu
from modelport.runtime import CpuInfo, native_precisions, read_cpuinfo

X86 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 avx512f avx512_vnni amx_bf16 amx_int8
processor\t: 1
model name\t: other
flags\t\t: fpu
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU model\t: Neoverse-N1\n"


def test_parses_the_first_processors_name_and_flags():
    assert read_cpuinfo(X86) == CpuInfo(
        "Intel(R) Xeon(R) Platinum 8480+",
        frozenset({"fpu", "avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"}),
    )
    assert read_cpuinfo(ARM) == CpuInfo("Neoverse-N1", frozenset({"fp", "asimd", "asimddp"}))
    assert read_cpuinfo("") == CpuInfo()


def test_this_machine_is_read_once_and_shared():
    assert read_cpuinfo() is read_cpuinfo()
    assert detect_cpu().flags <= read_cpuinfo().flags
    assert detect_cpu().model == read_cpuinfo().model


def test_its_users_agree_on_given_text():
    cpu = detect_cpu(X86, arch="x86_64")
    assert cpu.vnni and cpu.avx512 and cpu.model.startswith("Intel")
    assert detect_cpu(ARM, arch="aarch64").arm_dot


def test_nothing_else_reads_proc_cpuinfo():
    src = Path(__file__).resolve().parents[1] / "src" / "modelport"
    readers = sorted(
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if '"/proc/cpuinfo"' in p.read_text() or "'/proc/cpuinfo'" in p.read_text()
    )
    assert readers == ["runtime/cpu.py"]


def test_native_precisions_take_the_flags_from_it(monkeypatch):
    import modelport.runtime.engines as engines

    monkeypatch.setattr(engines, "read_cpuinfo", lambda: CpuInfo(flags=frozenset({"avx2"})))
    monkeypatch.setattr(engines, "_openvino_capabilities", lambda: ("FP32", "BF16"))
    assert native_precisions("openvino") == ("fp32",)
    monkeypatch.setattr(engines, "read_cpuinfo", lambda: CpuInfo(flags=frozenset({"amx_bf16"})))
    assert native_precisions("openvino") == ("fp32", "bf16")
