"""Hashing methods, one file each; registered through the ``hashbench.methods`` entry points.
Their contract is :class:`hashbench.api.method.HashMethod`."""
