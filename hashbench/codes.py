"""Binary codes, the public names (DESIGN.md): ``to_binary`` and CgAT's / SAAT's center codes.
They are defined in :mod:`hashbench.retrieval.codes`."""

from hashbench.retrieval.codes import center_codes, to_binary

__all__ = ["center_codes", "to_binary"]
