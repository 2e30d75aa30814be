"""The artifacts a worker keeps in memory for later stages: least recently used first out, by bytes.

A worker re-reads a clean model for every defense and attack on it and a split for every stage,
so keeping recent artifacts saves loads and checksum passes.  The budget is in tensor bytes, not
in artifacts: on a paper grid an encoding of NUS-WIDE's database (~50 MB) or an evaluation's
example images (~25 MB at 224×224) add up to gigabytes over hundreds of stages.
"""

from __future__ import annotations

from collections import OrderedDict

from hashbench.harness.store import Artifact


def artifact_bytes(art: Artifact) -> int:
    return sum(t.numel() * t.element_size() for t in art.tensors.values())


class ArtifactCache:
    """An LRU map key → :class:`Artifact` holding at most ``budget_bytes`` of tensors.

    An artifact larger than the whole budget is not kept at all.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._items: OrderedDict[str, tuple[Artifact, int]] = OrderedDict()
        self.bytes = 0

    def get(self, key: str) -> Artifact | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, art: Artifact) -> None:
        self.discard(key)
        size = artifact_bytes(art)
        if size > self.budget:
            return
        self._items[key] = (art, size)
        self.bytes += size
        while self.bytes > self.budget:
            _, (_, old) = self._items.popitem(last=False)
            self.bytes -= old

    def discard(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[1]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
