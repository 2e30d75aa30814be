"""The stage kinds: one module each, holding its typed spec, the function that computes its
artifact and its cost model (:class:`~hashbench.harness.stages.base.StageKind`); :mod:`.kinds`
lists them in run order."""
