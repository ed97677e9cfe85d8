"""The CPUs ``serve --ray`` asks the cluster for, whether they fit, and ``--replica-cpus auto``.

Ray schedules a replica only where its CPUs are free; a deployment whose replicas do not fit
waits for them forever. So before deploying, the CPUs the application reserves are compared with
the cluster's:

    requested = models x replicas x replica_cpus + ingress_replicas x min(replica_cpus, 0.5)

(with ``--autoscale MIN:MAX`` the replicas the application starts with, ``max(MIN, 1)``).
``--replica-cpus auto`` shares the available CPUs out (``auto_cpus``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import UsageError
from .config import RayConfig

__all__ = ["Demand", "auto_cpus", "check_fits", "demand", "resolve_cpus"]

MIN_CPUS = 0.01  # the smallest share --replica-cpus auto hands out


def _num(x: float) -> str:
    return f"{x:g}"


def _floor(x: float) -> float:
    """Down to 0.01 (Ray keeps 4 decimals; 2 read better and never round up past the total)."""
    return math.floor(x * 100 + 1e-6) / 100


@dataclass(frozen=True)
class Demand:
    """What an application reserves: ``models`` deployments of ``replicas`` replicas of
    ``replica_cpus`` each, and the ingress."""

    models: int
    replicas: int
    replica_cpus: float
    ingress_replicas: int
    ingress_cpus: float

    @property
    def total(self) -> float:
        return (
            self.models * self.replicas * self.replica_cpus
            + self.ingress_replicas * self.ingress_cpus
        )

    def __str__(self) -> str:
        return (
            f"{self.models} model(s) x {self.replicas} replica(s) x {_num(self.replica_cpus)} CPU"
            f" + {self.ingress_replicas} ingress replica(s) x {_num(self.ingress_cpus)} CPU"
            f" = {_num(round(self.total, 4))} CPUs"
        )


def demand(config: RayConfig, models: int, most: bool = False) -> Demand:
    """The CPUs ``config`` reserves for ``models`` models when it starts (``most``: when an
    autoscaled application has scaled to MAX)."""
    if most and config.autoscale is not None:
        hi = config.autoscale[1]
        ingress = config.ingress_replicas if config.ingress_replicas is not None else hi
        return Demand(models, hi, config.cpus, ingress, config.ingress_cpus)
    return Demand(
        models,
        config.initial_replicas(),
        config.cpus,
        config.initial_replicas(ingress=True),
        config.ingress_cpus,
    )


def auto_cpus(available: float, models: int, replicas: int, ingress_replicas: int) -> float:
    """CPUs per model replica so that every replica and the ingress fit into ``available``:

        share = available / (models x replicas + ingress_replicas)
        share >= 0.5:  (available - 0.5 x ingress_replicas) / (models x replicas)
                       (the ingress takes its 0.5 per replica, the models the rest)
        otherwise:     share (the ingress takes as much as a model replica)

    rounded down to 0.01; 0 when not even 0.01 per replica fits."""
    share = available / (models * replicas + ingress_replicas)
    if share >= 0.5:
        cpus = (available - 0.5 * ingress_replicas) / (models * replicas)
    else:
        cpus = share
    cpus = _floor(cpus)
    return cpus if cpus >= MIN_CPUS else 0.0


def resolve_cpus(config: RayConfig, models: int, available: float) -> RayConfig:
    """``config`` with ``replica_cpus`` "auto" replaced by ``auto_cpus`` (for an autoscaled
    application: shared among MAX replicas, so scaling up finds its CPUs)."""
    import dataclasses

    if config.replica_cpus != "auto":
        return config
    replicas = config.autoscale[1] if config.autoscale is not None else config.replicas
    ingress = config.ingress_replicas if config.ingress_replicas is not None else replicas
    cpus = auto_cpus(available, models, replicas, ingress)
    if cpus <= 0:
        raise UsageError(
            f"--replica-cpus auto: the Ray cluster has {_num(available)} CPUs available, not "
            f"enough for {models} model(s) x {replicas} replica(s) + {ingress} ingress "
            f"replica(s) at {MIN_CPUS} CPU each; free CPUs on the cluster or add nodes"
        )
    return dataclasses.replace(config, replica_cpus=cpus)


def check_fits(config: RayConfig, models: int, available: float, total: float) -> str:
    """UsageError when the application does not fit into ``available`` CPUs, naming the
    numbers and options that would fit; a warning (or "") when only autoscaling to MAX would
    not fit."""
    need = demand(config, models)
    if need.total > available + 1e-9:
        fits = []
        auto = auto_cpus(available, models, need.replicas, need.ingress_replicas)
        if auto > 0:
            fits.append(f"--replica-cpus {_num(auto)} (or --replica-cpus auto)")
        if config.autoscale is None and config.ingress_replicas is None:
            per_replica = models * config.cpus + config.ingress_cpus
            most = int((available + 1e-9) // per_replica) if per_replica > 0 else 0
            if 1 <= most < config.replicas:
                fits.append(f"--replicas {most}")
            elif most < 1 and config.replicas > 1:
                one = auto_cpus(available, models, 1, 1)
                if one > 0:
                    fits.append(f"--replicas 1 --replica-cpus {_num(one)}")
        fits.append("more CPUs on the cluster (--address a larger one)")
        fits.append("--no-cpu-check where an autoscaler adds nodes on demand")
        raise UsageError(
            f"the Ray cluster cannot run this: {need} requested, {_num(available)} CPUs "
            f"available (of {_num(total)}); Ray would wait for CPUs forever. Options that fit: "
            + "; ".join(fits)
        )
    if config.autoscale is not None:
        top = demand(config, models, most=True)
        if top.total > available + 1e-9:
            return (
                f"autoscaling to {config.autoscale[1]} replicas needs {_num(round(top.total, 4))}"
                f" CPUs, {_num(available)} are available: replicas beyond what fits wait for "
                "CPUs (nodes the cluster's autoscaler adds)"
            )
    return ""
