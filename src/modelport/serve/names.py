"""What model names, versions, version labels and URL hosts may look like, checked at every API
boundary, and the one way a name becomes a path inside the repository.

    name     1-128 characters of letters, digits, "_", "-", "."; starts with a letter or digit
             (so never ".", "..", "", an absolute path or anything with a "/" or "\\")
    version  decimal digits without a leading zero ("0" itself is allowed), below 2**63
    label    a letter, then up to 63 letters, digits, "_" or "-" ("stable", "canary")

Lookups in the repository are dictionary lookups, so an odd name can only ever be "not found";
these checks matter where a name or version becomes a path (registering a model) and make every
protocol answer a bad name the same way: 400 with a message that says what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError

__all__ = [
    "check_label",
    "check_model_name",
    "check_url_host",
    "check_version",
    "check_version_labels",
    "inside",
    "version_for_label",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_VERSION = re.compile(r"0|[1-9][0-9]{0,18}")
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
_HOST = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*")
_MAX_VERSION = 2**63 - 1


def check_model_name(name: object) -> str:
    """``name`` if it is a valid model name, else InputError (400)."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    raise InputError(
        f"invalid model name {name!r}: use 1-128 letters, digits, '_', '-' or '.', starting with "
        "a letter or digit (no '/', no '..', no absolute paths)",
        model=str(name),
    )


def check_version(version: object) -> int:
    """A model version ("3" or 3) as an int, else InputError (400)."""
    if isinstance(version, int) and not isinstance(version, bool):
        text = str(version)
    elif isinstance(version, str):
        text = version
    else:
        text = None
    if text is not None and _VERSION.fullmatch(text) and int(text) <= _MAX_VERSION:
        return int(text)
    raise InputError(
        f"invalid model version {version!r}: a version is a non-negative integer without "
        "leading zeros, e.g. 1 or 12"
    )


def check_label(label: object) -> str:
    """``label`` if it is a valid version label, else InputError (400)."""
    if isinstance(label, str) and _LABEL.fullmatch(label):
        return label
    raise InputError(
        f"invalid version label {label!r}: a label is a letter followed by up to 63 letters, "
        "digits, '_' or '-', e.g. stable or canary"
    )


def check_version_labels(labels: object) -> dict[str, int]:
    """A ``version_labels`` setting as a plain dict; UsageError naming the bad entry."""
    if not isinstance(labels, Mapping):
        raise UsageError(
            f"version_labels must be a mapping of label to version, e.g. "
            f'{{"stable": 1, "canary": 2}}, got {labels!r}'
        )
    out = {}
    for label, version in labels.items():
        try:
            out[check_label(label)] = check_version(version)
        except InputError as exc:
            raise UsageError(f"in version_labels: {exc.message}") from None
    return out


def check_url_host(host: object) -> str:
    """An allow-listed URL host: a lower-case DNS name or IP address, nothing else."""
    import ipaddress

    text = host.strip().lower() if isinstance(host, str) else ""
    try:
        ipaddress.ip_address(text.strip("[]"))
        return text.strip("[]")
    except ValueError:
        pass
    if text and len(text) <= 253 and _HOST.fullmatch(text):
        return text
    raise UsageError(
        f"invalid URL host {host!r} for the allow-list: give a bare host name or IP address "
        "(e.g. models.example.com), without scheme, port, path or wildcards"
    )


def inside(root: Path, *parts: str) -> Path:
    """``root/part/...`` after checking each part is a model name or version and that the result
    (symlinks resolved) is still under ``root``; InputError otherwise."""
    for part in parts:
        if not (_NAME.fullmatch(part) or _VERSION.fullmatch(part)):
            check_model_name(part)
    root_resolved = root.resolve()
    path = root_resolved.joinpath(*parts)
    if not path.resolve().is_relative_to(root_resolved):
        raise InputError(f"'{'/'.join(parts)}' leads outside the model repository")
    return path


def version_for_label(repository: Any, name: str, label: str) -> str:
    """The version a label points at, from the model's ``version_labels`` setting.

    The labels are read from the serving config of the model's default version (they live in
    REPO/<model>/config.json, which every version shares); ModelNotFoundError if no label matches.
    """
    from .errors import ModelNotFoundError

    check_label(label)
    entry = repository.entry(name)
    states = [entry.default] if entry.default is not None else []
    states += [vs for vs in entry.versions.values() if vs is not entry.default]
    labels: Mapping[str, int] = {}
    for vs in states:
        if vs.model is not None:
            labels = vs.model.config.version_labels
            break
    if label not in labels:
        known = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
        raise ModelNotFoundError(
            f"model '{name}' has no version label '{label}' (labels: {known}); set "
            'version_labels, e.g. {"stable": 1, "canary": 2}, in its config.json',
            model=name,
        )
    return str(labels[label])
