"""ONNX Runtime: the only place in modelport that creates ``onnxruntime`` sessions."""

from .session import SessionConfig, available_providers, make_session, run_session

__all__ = ["SessionConfig", "available_providers", "make_session", "run_session"]
