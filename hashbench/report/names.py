"""How the report orders and labels plugin names: the papers' order first, unknown names after.

Plugins the papers do not know (third-party ones) keep their own name as label and are sorted
alphabetically after the known ones, so every view lists them in the same, deterministic order.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from hashbench.results.schema import CLEAN

#: The ``defense`` value of the undefended model.
NO_DEFENSE = "none"

#: Canonical order of each coordinate: the order of the papers' tables.
ORDER: dict[str, tuple[str, ...]] = {
    "dataset": ("flickr25k", "nuswide21", "mscoco"),
    "method": ("dph", "dpsh", "hashnet", "dsdh", "dch", "csq", "dsdh-c", "greedyhash", "csq-c", "dpn", "hswd", "ortho"),
    "defense": (NO_DEFENSE, "atrdh", "cgat", "saat", "comdefend"),
    "attack": (CLEAN, "p2p", "dhta", "prosgan", "tha", "hag", "sdha", "center", "mainstay", "mainstay-t", "sdha-t",
               "bim", "mi-fgsm", "di-fgsm", "ni-fgsm", "si-ni-fgsm", "vmi-fgsm"),
    "backbone": ("alexnet", "vgg11", "smallcnn"),
}

#: Display labels, as the papers write them.
LABELS: dict[str, dict[str, str]] = {
    "dataset": {"flickr25k": "FLICKR-25K", "nuswide21": "NUS-WIDE", "mscoco": "MS-COCO"},
    "method": {"dph": "DPH", "dpsh": "DPSH", "hashnet": "HashNet", "dsdh": "DSDH", "dch": "DCH", "csq": "CSQ",
               "dsdh-c": "DSDH-C", "greedyhash": "GreedyHash", "csq-c": "CSQ-C", "dpn": "DPN", "hswd": "HSWD",
               "ortho": "Ortho"},
    "defense": {NO_DEFENSE: "undefended", "atrdh": "ATRDH", "cgat": "CgAT", "saat": "SAAT", "comdefend": "ComDefend"},
    "attack": {CLEAN: "Clean", "p2p": "P2P", "dhta": "DHTA", "prosgan": "ProS-GAN", "tha": "THA", "hag": "HAG",
               "sdha": "SDHA", "center": "Center", "mainstay": "Mainstay", "mainstay-t": "Mainstay-T",
               "sdha-t": "SDHA-T", "bim": "BIM", "mi-fgsm": "MI-FGSM", "di-fgsm": "DI-FGSM", "ni-fgsm": "NI-FGSM",
               "si-ni-fgsm": "SI-NI-FGSM", "vmi-fgsm": "VMI-FGSM"},
    "backbone": {"alexnet": "AlexNet", "vgg11": "VGG11", "smallcnn": "SmallCNN"},
}

#: Longer descriptions shown as tooltips and captions.
NOTES: dict[str, dict[str, str]] = {
    "attack": {"center": "CgAT's center-guided attack (Table 4's \"Ours\")",
               "mainstay": "SAAT's mainstay-code attack (\"Ours\" in SAAT's tables)",
               "mainstay-t": "SAAT's targeted mainstay-code attack (\"SAAT (Ours)\" t-MAP in SAAT's Table I)"},
}


def label(kind: str, name: object) -> str:
    """The display label of a plugin name (the name itself when the papers do not know it)."""
    return LABELS.get(kind, {}).get(str(name), str(name))


def note(kind: str, name: object) -> str | None:
    return NOTES.get(kind, {}).get(str(name))


def ordered(kind: str, values: Iterable[object]) -> list:
    """Distinct ``values`` in canonical order: known names as the papers list them, then the rest.

    Unknown numbers (bits, seeds) sort numerically, unknown names alphabetically.
    """
    return sorted(dict.fromkeys(values), key=lambda v: sort_key(kind, v))


def model_label(method: object, defense: object, *, with_method: bool = False) -> str:
    """A row label as the papers write it: ``DPSH (undefended)``, ``ATRDH`` or, with
    ``with_method``, ``HashNet + ATRDH``."""
    if defense == NO_DEFENSE:
        return f"{label('method', method)} (undefended)"
    if with_method:
        return f"{label('method', method)} + {label('defense', defense)}"
    return label("defense", defense)


def sort_key(kind: str, value: object) -> tuple:
    """A key that sorts ``value`` the way :func:`ordered` does."""
    canon = ORDER.get(kind, ())
    if value in canon:
        return (0, canon.index(value), "")
    if isinstance(value, numbers.Real):
        return (1, float(value), "")
    return (2, 0, str(value))
