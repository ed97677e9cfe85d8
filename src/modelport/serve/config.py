"""Serving configuration: per-model settings and the server's settings.

Per-model settings come from, in increasing precedence: the built-in defaults, the command line
(defaults for every model), the ``serving`` section of the package's ``modelport.json``, and a
``config.json`` / ``config.yaml`` in the model's directory beside its version directories.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = [
    "EXECUTION_MODES",
    "GRPC_LIMIT_RANGES",
    "GrpcLimits",
    "ManagementConfig",
    "ModelConfig",
    "ServerConfig",
    "TLSConfig",
    "VersionPolicy",
    "available_cores",
    "check_engine",
    "engine_override",
]

EXECUTION_MODES = ("auto", "inline", "thread")
# "auto" runs a model on the event loop when a warm-up batch takes less than this: for small
# models handing the work to a thread costs more than the run itself (measured, docs/serve.md).
INLINE_THRESHOLD_S = 0.0005


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class VersionPolicy:
    """Which numeric versions of a model to serve.

    kind: "latest" (the ``num_versions`` highest), "all", or "specific" (``versions``).
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "all", "specific"):
            raise UsageError(
                f"version_policy kind {self.kind!r} is not one of 'latest', 'all', 'specific'"
            )
        if self.kind == "latest" and self.num_versions < 1:
            raise UsageError("version_policy latest needs num_versions >= 1, e.g. 'latest:2'")
        if self.kind == "specific" and not self.versions:
            raise UsageError("version_policy specific needs versions, e.g. 'specific:1,3'")

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve among ``available``, highest first."""
        ordered = sorted(set(available), reverse=True)
        if self.kind == "all":
            return ordered
        if self.kind == "latest":
            return ordered[: self.num_versions]
        return [v for v in ordered if v in self.versions]

    @classmethod
    def parse(cls, value: Any) -> VersionPolicy:
        """From "latest", "latest:2", "all", "specific:1,3", or the Triton/TF Serving mapping
        form ``{"latest": {"num_versions": 2}}``, ``{"all": {}}``, ``{"specific": {"versions": [1]}}``."""
        if isinstance(value, VersionPolicy):
            return value
        if isinstance(value, Mapping) and len(value) == 1:
            kind, body = next(iter(value.items()))
            body = body or {}
            try:
                if kind == "latest":
                    n = body.get("num_versions", 1)
                    if isinstance(n, bool) or not isinstance(n, int):
                        raise TypeError(n)
                    return cls("latest", num_versions=n)
                if kind == "specific":
                    versions = list(body.get("versions", ()))
                    if not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
                        raise TypeError(versions)
                    return cls("specific", versions=tuple(versions))
            except (TypeError, ValueError, AttributeError):
                raise UsageError(
                    f"cannot read version_policy {value!r}: versions and num_versions must be "
                    "integers"
                ) from None
            return cls(str(kind))
        if isinstance(value, str):
            kind, _, arg = value.partition(":")
            try:
                if kind == "latest":
                    return cls("latest", num_versions=int(arg) if arg else 1)
                if kind == "specific":
                    return cls("specific", versions=tuple(int(v) for v in arg.split(",") if v))
            except ValueError:
                pass
            else:
                return cls(kind)
        raise UsageError(
            f"cannot read version_policy {value!r}; use 'latest', 'latest:N', 'all' or "
            "'specific:1,3'"
        )

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return "all"


# field -> (kind, lowest, highest): the type and range every per-model setting must have. Checked
# strictly (a bool is not a number, 1.5 is not an integer, NaN and infinities are refused) because
# these values come from files and HTTP parameters. A small table rather than a schema library:
# importing pydantic costs 190-330 ms of serve start-up on the reference machine (measured).
_MODEL_FIELD_RANGES: dict[str, tuple[str, float, float]] = {
    "max_batch_size": ("int", 1, 1 << 20),
    "max_queue_delay_ms": ("float", 0, 60_000),
    "max_queue_size": ("int", 1, 1_000_000),
    "instances": ("int", 1, 256),
    "intra_op_threads": ("int", 0, 1024),
    "execution": ("str", 0, 0),
    "timeout_ms": ("float", 0, 86_400_000),
    "warmup": ("bool", 0, 0),
    "max_request_rows": ("int", 0, 1 << 31),
    "max_tensor_elements": ("int", 0, 1 << 40),
    "engine": ("str", 0, 0),
    "precision": ("str", 0, 0),
}


def _check_types(obj: Any, table: Mapping[str, tuple[str, float, float]]) -> None:
    """UsageError naming every field of ``obj`` whose value has the wrong type or range."""
    problems = []
    for name, (kind, low, high) in table.items():
        value = getattr(obj, name)
        if value is None and name in getattr(obj, "_OPTIONAL", ()):
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                problems.append(f"{name} must be true or false, got {value!r}")
            continue
        if kind == "str":
            if not isinstance(value, str):
                problems.append(f"{name} must be a string, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            what = "an integer" if kind == "int" else "a number"
            problems.append(f"{name} must be {what}, got {value!r}")
        elif kind == "int" and not isinstance(value, int):
            problems.append(f"{name} must be an integer, got {value!r}")
        elif not math.isfinite(value):
            problems.append(f"{name} must be a finite number, got {value!r}")
        elif not low <= value <= high:
            problems.append(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    if problems:
        raise UsageError("invalid serving config: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelConfig:
    """How one model is served.

    max_batch_size: most rows merged into one ONNX Runtime call by dynamic batching (1 = off).
        Only models whose inputs and outputs all have a dynamic first axis are batched.
    max_queue_delay_ms: how long the first queued request may wait for others to fill a batch
        (0 = batch only what is already queued, never wait).
    max_queue_size: requests that may wait for this model; more are refused at once (503).
    instances: ONNX Runtime calls that may run at the same time for this model.
    intra_op_threads: ORT threads per call (0 = the available cores divided by ``instances``).
    execution: "thread" runs calls in a thread pool, "inline" on the event loop (small models),
        "auto" picks "inline" when a warm-up batch takes under 0.5 ms.
    timeout_ms: a request not answered within this is failed with 504 / DEADLINE_EXCEEDED.
    version_policy: which versions to serve (see VersionPolicy).
    warmup: run generated inputs through the model before it is marked ready.
    version_labels: names for versions, e.g. {"stable": 1, "canary": 2} (TF Serving's labels:
        GET /v1/models/<m>/labels/canary, ModelSpec.version_label).
    max_request_rows: most rows (batch axis) one request may send; 0 = derived from the model,
        max(1024, max_batch_size). Larger requests are refused with 413 before they run.
    max_tensor_elements: most elements in one input tensor; 0 = derived from the model, the
        larger of 2**24 and max_request_rows x the input's fixed elements per row.
    engine / precision: the inference engine ("ort" or "openvino") and its float precision
        ("fp32", "bf16" where the CPU runs it natively); ``modelport plan`` writes the pair it
        measured into the package's serving section (see ``modelport.runtime``).
    """

    max_batch_size: int = 32
    max_queue_delay_ms: float = 0.0
    max_queue_size: int = 512
    instances: int = 1
    intra_op_threads: int = 0
    execution: str = "auto"
    timeout_ms: float = 30_000.0
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    warmup: bool = True
    version_labels: Mapping[str, int] = field(default_factory=dict)
    max_request_rows: int = 0
    max_tensor_elements: int = 0
    engine: str = "ort"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_types(self, _MODEL_FIELD_RANGES)
        if isinstance(self.version_policy, str | Mapping):
            object.__setattr__(self, "version_policy", VersionPolicy.parse(self.version_policy))
        from .names import check_version_labels

        object.__setattr__(self, "version_labels", check_version_labels(self.version_labels))
        problems = []
        if self.max_batch_size < 1:
            problems.append(
                f"max_batch_size must be >= 1 (1 turns batching off), got {self.max_batch_size}"
            )
        if self.max_queue_delay_ms < 0:
            problems.append(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms}")
        if self.max_queue_size < 1:
            problems.append(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if self.instances < 1:
            problems.append(f"instances must be >= 1, got {self.instances}")
        if self.intra_op_threads < 0:
            problems.append(
                f"intra_op_threads must be >= 0 (0 = automatic), got {self.intra_op_threads}"
            )
        if self.execution not in EXECUTION_MODES:
            problems.append(f"execution must be one of {EXECUTION_MODES}, got {self.execution!r}")
        if self.timeout_ms <= 0:
            problems.append(f"timeout_ms must be > 0, got {self.timeout_ms}")
        if self.max_request_rows < 0:
            problems.append(
                f"max_request_rows must be >= 0 (0 = derived), got {self.max_request_rows}"
            )
        if self.max_tensor_elements < 0:
            problems.append(
                f"max_tensor_elements must be >= 0 (0 = derived), got {self.max_tensor_elements}"
            )
        try:
            from ..runtime import EngineConfig

            EngineConfig(engine=self.engine, precision=self.precision)
        except UsageError as exc:
            problems.append(exc.message)
        if problems:
            raise UsageError("invalid serving config: " + "; ".join(problems))

    @property
    def threads(self) -> int:
        """ORT intra-op threads per call: the cores shared by the instances, at least 1."""
        return self.intra_op_threads or max(1, available_cores() // self.instances)

    def merged(self, overrides: Mapping[str, Any], source: str = "") -> ModelConfig:
        """A copy with ``overrides`` applied; unknown keys are an error naming ``source``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            where = f" in {source}" if source else ""
            raise UsageError(
                f"unknown serving setting(s) {unknown}{where}; known settings: {sorted(names)}"
            )
        try:
            return dataclasses.replace(self, **dict(overrides))
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"invalid serving setting{' in ' + source if source else ''}: {exc}"
            ) from exc
        except UsageError as exc:
            if not source:
                raise
            raise UsageError(f"{exc.message} (in {source})") from None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["version_policy"] = str(self.version_policy)
        d["version_labels"] = dict(self.version_labels)
        return d


MIN_TOKEN_CHARS = 16


def _check_token(token: str | None, what: str) -> None:
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable()):
        raise UsageError(
            f"{what} must be at least {MIN_TOKEN_CHARS} printable characters; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


@dataclass(frozen=True)
class TLSConfig:
    """Serve HTTP (every port) and gRPC over TLS with this certificate and its private key (PEM)."""

    certfile: Path
    keyfile: Path

    def __post_init__(self) -> None:
        for name in ("certfile", "keyfile"):
            path = Path(getattr(self, name))
            object.__setattr__(self, name, path)
            if not path.is_file():
                raise UsageError(f"TLS {name} '{path}' is not a file", path=str(path))


@dataclass(frozen=True)
class ManagementConfig:
    """The management API (TorchServe-compatible + V2 repository extension) on its own port.

    host / port: where it listens; loopback by default (0 picks a free port).
    token: the bearer token every call must carry; None = generate one at start and write it to
        ``token_file`` (mode 0600).
    token_file: where a generated token is written (default ~/.modelport/management-<port>.token).
    allow_url_hosts: hosts that ``POST /models?url=http(s)://...`` may download from; empty = no
        registering from URLs at all (only local package directories and .onnx files).
    max_download_bytes: the largest model a URL registration may download.
    """

    host: str = "127.0.0.1"
    port: int = 8081
    token: str | None = None
    token_file: Path | None = None
    allow_url_hosts: tuple[str, ...] = ()
    max_download_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"management port must be between 0 and 65535, got {self.port}")
        _check_token(self.token, "the management token")
        if self.token_file is not None:
            object.__setattr__(self, "token_file", Path(self.token_file))
        from .names import check_url_host

        object.__setattr__(
            self, "allow_url_hosts", tuple(check_url_host(h) for h in self.allow_url_hosts)
        )
        if self.max_download_bytes < 1:
            raise UsageError("max_download_bytes must be >= 1")


# GrpcLimits field -> (kind, lowest, highest); `modelport serve`'s --grpc-* flags take the same ranges
GRPC_LIMIT_RANGES: dict[str, tuple[str, float, float]] = {
    "max_concurrent_rpcs": ("int", 1, 1_000_000),
    "max_streams_per_connection": ("int", 1, 1_000_000),
    "handshake_timeout_s": ("float", 0.1, 3600),
    "idle_timeout_s": ("float", 0.1, 86_400),
    "max_connection_age_s": ("float", 0, 30 * 86_400),
    "age_grace_s": ("float", 0, 86_400),
    "keepalive_time_s": ("float", 1, 86_400),
    "keepalive_timeout_s": ("float", 1, 3600),
}


@dataclass(frozen=True)
class GrpcLimits:
    """Connection and stream limits of the gRPC ports (KServe V2 and TF Serving), the
    counterparts of the HTTP ports' (``ServerConfig``'s header timeout, keep-alive timeout and
    connection cap). The largest message is ``ServerConfig.max_request_bytes``, as for HTTP.

    max_concurrent_rpcs: RPCs in progress per gRPC server; a call beyond it is refused at once
        with RESOURCE_EXHAUSTED (nothing queues unbounded).
    max_streams_per_connection: concurrent calls one HTTP/2 connection may have open (its
        SETTINGS_MAX_CONCURRENT_STREAMS); a client's further calls wait on its side.
    handshake_timeout_s: a new connection must finish its (TLS and) HTTP/2 handshake within
        this, else it is closed (a client that connects and sends nothing).
    idle_timeout_s: a connection with no call for this long is sent GOAWAY and closed; clients
        reconnect on their next call.
    max_connection_age_s: connections are asked to reconnect after this long (spreads
        long-lived clients over replicas behind a load balancer); 0 = never. age_grace_s: the
        calls in flight then get this long to finish.
    keepalive_time_s / keepalive_timeout_s: the server pings a connection that has been quiet
        this long and closes it when the ping is not answered in time (a peer that vanished).
    """

    max_concurrent_rpcs: int = 2048
    max_streams_per_connection: int = 128
    handshake_timeout_s: float = 30.0
    idle_timeout_s: float = 300.0
    max_connection_age_s: float = 0.0
    age_grace_s: float = 30.0
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        _check_types(self, GRPC_LIMIT_RANGES)

    def server_options(self, max_message_bytes: int) -> list[tuple[str, int]]:
        """grpc server options (channel arguments) for these limits."""

        def ms(seconds: float) -> int:
            return int(seconds * 1000)

        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_concurrent_streams", self.max_streams_per_connection),
            ("grpc.server_handshake_timeout_ms", ms(self.handshake_timeout_s)),
            ("grpc.max_connection_idle_ms", ms(self.idle_timeout_s)),
            ("grpc.keepalive_time_ms", ms(self.keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout_s)),
            # clients may ping an idle connection every 10 s (more often: GOAWAY, gRPC's rule)
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if self.max_connection_age_s > 0:
            options += [
                ("grpc.max_connection_age_ms", ms(self.max_connection_age_s)),
                ("grpc.max_connection_age_grace_ms", ms(self.age_grace_s)),
            ]
        return options


_SERVER_FIELD_RANGES: dict[str, tuple[str, float, float]] = {
    "poll_s": ("float", 0, 86_400),
    "max_request_bytes": ("int", 1024, 1 << 40),
    "shutdown_grace_s": ("float", 0, 86_400),
    "log_json": ("bool", 0, 0),
    "header_timeout_s": ("float", 0.1, 3600),
    "body_timeout_s": ("float", 0.1, 3600),
    "keep_alive_timeout_s": ("float", 0.1, 3600),
    "max_connections": ("int", 16, 1_000_000),
    "strict_readiness": ("bool", 0, 0),
}


def engine_override(spec: str) -> dict[str, str]:
    """One ``serve --engine`` spec (``ort``, ``openvino``, ``openvino:bf16``; ``package`` = each
    package's serving section) -> the override every model loads with (``{}`` for package)."""
    from ..runtime import PACKAGE_SPEC, engine_config

    if spec.strip().lower() == PACKAGE_SPEC:
        return {}
    config = engine_config(spec)  # an unknown engine or precision: UsageError naming it
    return {"engine": config.engine, "precision": config.precision}


def check_engine(engine: Mapping[str, str]) -> None:
    """UsageError unless ``engine`` (``serve --engine`` for every model: ``{"engine": ...,
    "precision": ...}``) names an engine and precision that exist (``ort:bf16`` does not)."""
    from ..runtime import EngineConfig

    unknown = sorted(set(engine) - {"engine", "precision"})
    if unknown:
        raise UsageError(f"engine takes 'engine' and 'precision', not {unknown}")
    # an unknown engine, ort + bf16: UsageError naming it
    EngineConfig(
        engine=str(engine.get("engine", "ort")), precision=str(engine.get("precision", "fp32"))
    )


@dataclass(frozen=True)
class ServerConfig:
    """The server.

    repository: a model repository (REPO/<name>/<version>/) or one model package.
    host: the address HTTP and gRPC listen on (loopback by default; management calls are only
        accepted from loopback peers whatever the host).
    http_port / grpc_port: 0 picks a free port; grpc_port None turns gRPC off.
    poll_s: re-scan the repository every this many seconds (None = only explicit load/unload).
    model_defaults: settings for models that do not set their own.
    max_request_bytes: largest HTTP body and gRPC message accepted.
    shutdown_grace_s: how long SIGTERM waits for requests in flight.
    log_json: log one JSON object per line.
    auth_token: when set, every inference call (HTTP and gRPC, all protocols) must carry
        ``Authorization: Bearer <token>``; health checks are exempt. None = no auth.
    tls: serve HTTP, gRPC and the management API over TLS (None = plain text).
    tfserving_grpc_port: TF Serving's gRPC API (PredictionService, ModelService) on this port;
        None = off (it needs the tensorflow-serving-api package, which imports tensorflow).
    management: the management API on its own port (None = off).
    trust: run custom processing handlers shipped in packages (it is Python code).
    header_timeout_s: an HTTP connection must send a request's complete headers within this of
        opening (or of its first byte after a keep-alive pause); else it is closed.
    body_timeout_s: longest pause between two chunks of a request body before the connection
        is closed.
    keep_alive_timeout_s: an idle keep-alive connection is closed after this.
    max_connections: open HTTP connections per port; beyond it the connection idle the longest
        is closed (503 for the new one if every connection is busy). Also kept below the
        process's open-file limit.
    strict_readiness: /v2/health/ready (and ServerReady, /ping) only when every model that
        should be loaded is READY and at least one is (Triton's --strict-readiness); False =
        ready once the initial load is done, whatever the models' states.
    grpc_limits: connection and stream limits of the gRPC ports (``GrpcLimits``).
    engine: ``{"engine": ..., "precision": ...}`` for every model, over the package's serving
        section (``modelport serve --engine``); a model's config.json still wins. Empty = each
        package's serving section.
    """

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int | None = 8001
    poll_s: float | None = None
    model_defaults: ModelConfig = field(default_factory=ModelConfig)
    max_request_bytes: int = 256 * 1024 * 1024
    shutdown_grace_s: float = 30.0
    log_json: bool = False
    auth_token: str | None = None
    tls: TLSConfig | None = None
    tfserving_grpc_port: int | None = None
    management: ManagementConfig | None = None
    trust: bool = False
    header_timeout_s: float = 30.0
    body_timeout_s: float = 60.0
    keep_alive_timeout_s: float = 5.0
    max_connections: int = 2048
    strict_readiness: bool = True
    grpc_limits: GrpcLimits = field(default_factory=GrpcLimits)
    engine: Mapping[str, str] = field(default_factory=dict)

    _OPTIONAL = ("poll_s",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", Path(self.repository))
        if not self.repository.exists():
            raise UsageError(
                f"model repository '{self.repository}' does not exist; give a directory laid "
                "out as REPO/<model>/<version>/ or one model package",
                path=str(self.repository),
            )
        ports = {
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "tfserving_grpc_port": self.tfserving_grpc_port,
            "management port": self.management.port if self.management else None,
        }
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port is not None and not 0 <= port <= 65535:
                raise UsageError(f"{name} must be between 0 and 65535, got {port}")
            if port and port in seen:
                raise UsageError(f"{seen[port]} and {name} are both {port}; pick different ports")
            if port:
                seen[port] = name
        _check_token(self.auth_token, "the inference auth token")
        _check_types(self, _SERVER_FIELD_RANGES)
        if self.poll_s is not None and self.poll_s <= 0:
            raise UsageError(f"poll_s must be > 0 seconds, got {self.poll_s}")
        if self.max_request_bytes < 1024:
            raise UsageError(
                f"max_request_bytes must be at least 1024, got {self.max_request_bytes}"
            )
        if self.shutdown_grace_s < 0:
            raise UsageError("shutdown_grace_s must be >= 0")
        if not isinstance(self.grpc_limits, GrpcLimits):
            raise UsageError(f"grpc_limits must be a GrpcLimits, got {self.grpc_limits!r}")
        if self.engine:
            check_engine(self.engine)
