"""The undefended baseline."""

from __future__ import annotations

from hashbench.api.defense import Defense


class NoDefense(Defense):
    """No defense: the clean model is attacked as trained (the "victim" rows of the papers' tables)."""

    name = "none"
    description = "no defense: the clean model itself"
    paper = "-"
    identity = True

    def fit(self, model, method, data, ctx):
        return model, {}
