"""Shape checks shared by the metrics and the code computations, with the same wording."""

from __future__ import annotations

from collections.abc import Sequence


def check_agree(what: str, a_name: str, a_shape: Sequence[int], a_dim: int, b_name: str, b_shape: Sequence[int],
                b_dim: int, letter: str | None = None) -> None:
    """:class:`ValueError` ("row mismatch: query_codes has shape (…), query_labels has shape (…) (Q must
    agree)") unless dimension ``a_dim`` of ``a_shape`` equals dimension ``b_dim`` of ``b_shape``."""
    if a_shape[a_dim] != b_shape[b_dim]:
        agree = f" ({letter} must agree)" if letter else ""
        raise ValueError(f"{what}: {a_name} has shape {tuple(a_shape)}, {b_name} has shape {tuple(b_shape)}{agree}")
