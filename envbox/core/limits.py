"""Resource limits of a launch and byte sizes: values, validation, parsing, formatting. Pure."""

from __future__ import annotations

import math

from envbox.core.frozen import frozen

MAX_SIZE = 2**63 - 1  # what the kernel's page counters and our int64 files can hold
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_SIZE_PATTERN = r"(\d+)(?:\.(\d+))?\s*([kmgt]?)(i?b)?"  # compiled (and cached) by re on first use
_SIZE_HELP = "a number of bytes, or with K, M, G or T (binary: 1K = 1024), e.g. 512M, 1.5G"


@frozen
class Limits:
    """Caps for one launch; None means no cap.

    memory_swap caps memory and swap together (the v1 memory.memsw semantics, as docker's
    --memory-swap): it needs memory and must be at least memory. cgroup2 and systemd cap
    swap alone, so they get memory_swap - memory (memory.swap.max, MemorySwapMax=). Without
    memory_swap, swap is not capped (no swap on a host: nothing to cap)."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes, memory + swap
    cpu: float | None = None  # cores, e.g. 1.5; at least 0.01 (the kernel's 1 ms quota floor)
    pids: int | None = None  # processes + threads

    def __post_init__(self) -> None:
        problem = limits_problem(self)
        if problem:
            raise ValueError(problem)

    def empty(self) -> bool:
        return self.memory is None and self.memory_swap is None and self.cpu is None and self.pids is None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def limits_problem(limits: Limits) -> str | None:
    """Why these limits are invalid, or None."""
    for field in ("memory", "memory_swap", "pids"):
        value = getattr(limits, field)
        if value is not None and not (_is_int(value) and 1 <= value <= MAX_SIZE):
            return f"{field} must be a whole number from 1 to 2**63-1, not {value!r}"
    if limits.memory_swap is not None and (limits.memory is None or limits.memory_swap < limits.memory):
        return "memory_swap caps memory + swap together: it needs memory and must be at least memory"
    cpu = limits.cpu
    number = isinstance(cpu, (int, float)) and not isinstance(cpu, bool)
    if cpu is not None and not (number and math.isfinite(cpu) and 0.01 <= cpu <= 1e6):
        return f"cpu must be a number of cores of at least 0.01, not {cpu!r}"
    return None


def parse_size(text: str | int) -> int:
    """'2G', '512M', '1.5G', '2 GiB', 1048576 -> bytes (K/M/G/T are binary). ValueError if bad."""
    if _is_int(text):
        value = text
    elif isinstance(text, str):
        value = _parse_size_text(text)
    else:
        raise ValueError(f"not a size: {text!r} (expected {_SIZE_HELP})")
    if value < 0:
        raise ValueError(f"a size cannot be negative: {text!r}")
    if value > MAX_SIZE:
        raise ValueError(f"size {text!r} is too large (at most 2**63-1 bytes, about 8 EiB)")
    return value


def _parse_size_text(text: str) -> int:
    s = text.strip()
    if s.startswith("-"):
        raise ValueError(f"a size cannot be negative: {text!r}")
    import re  # only when parsing a profile, never on the launch path

    match = re.fullmatch(_SIZE_PATTERN, s, re.IGNORECASE) if len(s) <= 64 else None
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected {_SIZE_HELP})")
    whole, frac, unit, suffix = match.groups()
    frac = frac or ""
    if not unit and (frac or (suffix or "").lower() == "ib"):
        raise ValueError(f"not a size: {text!r} (a fraction needs a unit, e.g. 1.5G)")
    # Integer arithmetic: 1.5G is exactly 1610612736, with no float rounding.
    return int(whole + frac) * 1024 ** _UNITS[unit.lower()] // 10 ** len(frac)


def format_size(n: int) -> str:
    """2147483648 -> '2 GiB', 1536 -> '1.5 KiB', 100 -> '100 B'."""
    if not _is_int(n) or n < 0:
        raise ValueError(f"not a size in bytes: {n!r}")
    for power, unit in ((6, "EiB"), (5, "PiB"), (4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        size = 1024**power
        if n >= size:
            if n % size == 0:
                return f"{n // size} {unit}"
            return f"{n / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"
