"""Inference engines: the only place in modelport that creates ONNX Runtime or OpenVINO sessions.

``load_engine`` (engines.py) loads a model on either engine behind one interface and reports what
ran; ``make_session`` / ``run_session`` (session.py) are the ONNX Runtime layer underneath.
"""

from .cpu import CpuInfo, read_cpuinfo
from .engines import (
    ENGINES,
    PACKAGE_SPEC,
    PRECISIONS,
    EngineConfig,
    EngineInfo,
    EngineSession,
    disabled_precisions,
    engine_available,
    engine_config,
    load_engine,
    native_precisions,
    parse_engine_specs,
)
from .session import SessionConfig, available_providers, make_session, run_session

__all__ = [
    "CpuInfo",
    "ENGINES",
    "PACKAGE_SPEC",
    "PRECISIONS",
    "EngineConfig",
    "EngineInfo",
    "EngineSession",
    "SessionConfig",
    "available_providers",
    "disabled_precisions",
    "engine_available",
    "engine_config",
    "load_engine",
    "make_session",
    "native_precisions",
    "parse_engine_specs",
    "read_cpuinfo",
    "run_session",
]
