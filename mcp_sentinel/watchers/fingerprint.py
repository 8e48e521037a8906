"""Alertmanager's alert fingerprint, computed from labels, and Prometheus's external labels.

Alertmanager identifies an alert by ``LabelSet.Fingerprint()`` (prometheus/common ``model``):
FNV-1a 64 over the label names in sorted order, each name and each value followed by the
separator byte 0xFF, printed as 16 lower-case hex digits. Computing the same value here lets the
Prometheus poller's notifications share the dispatcher's dedupe keys with what the webhook and
the Alertmanager poller deliver for the same alert.
"""

from __future__ import annotations

from collections.abc import Mapping

_FNV_OFFSET_64 = 0xCBF29CE484222325
_FNV_PRIME_64 = 0x100000001B3
_MASK_64 = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = 0xFF


def _add(digest: int, data: bytes) -> int:
    for byte in data:
        digest ^= byte
        digest = (digest * _FNV_PRIME_64) & _MASK_64
    return digest


def fingerprint(labels: Mapping[str, str]) -> str:
    """The Alertmanager fingerprint of ``labels``, e.g. ``8d746f6f305121f8``.

    An empty label set has the FNV offset basis as its fingerprint, as in Alertmanager.
    """
    digest = _FNV_OFFSET_64
    separator = bytes([_SEPARATOR])
    for name in sorted(labels):
        digest = _add(digest, name.encode())
        digest = _add(digest, separator)
        digest = _add(digest, labels[name].encode())
        digest = _add(digest, separator)
    return f"{digest:016x}"


def with_external_labels(labels: Mapping[str, str], external: Mapping[str, str]) -> dict[str, str]:
    """The labels Prometheus sends to Alertmanager: ``labels`` plus each external label the
    alert does not already carry (an alert's own label wins, as in Prometheus's notifier; an
    empty value means "no label" in Prometheus, so one is never added)."""
    merged = dict(labels)
    for name, value in external.items():
        if value and not merged.get(name):
            merged[name] = value
    return merged
