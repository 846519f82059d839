"""Resource quantities ("1Gi", "500M", "1.5e3") as numbers, for comparing sizes.

Admission (a claim may only grow) and the volume controllers (a claim asks for more than
it has) compare storage sizes the way apimachinery's `resource.Quantity.Cmp` does: by
value, whatever the suffix. Exact decimals, so "1024Mi" equals "1Gi".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_FORM = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def value(quantity: object) -> Decimal | None:
    """The quantity's value in base units (bytes for storage), or None when it is not one."""
    if isinstance(quantity, bool) or quantity is None:
        return None
    if isinstance(quantity, (int, float)):
        return Decimal(str(quantity))
    match = _FORM.match(str(quantity).strip())
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def storage(obj: dict, where: str = "spec") -> Decimal | None:
    """A claim's `spec.resources.requests.storage` (`where="spec"`) or its
    `status.capacity.storage` (`where="status"`), as bytes."""
    if where == "spec":
        raw = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
            "storage")
    else:
        raw = ((obj.get("status") or {}).get("capacity") or {}).get("storage")
    return value(raw)
