"""An example third-party hashbench plugin distribution.

hashbench never imports this package directly: it finds the two plugins through the
``hashbench.attacks`` and ``hashbench.defenses`` entry points declared in ``pyproject.toml``
and imports each one the first time a grid, ``hashbench list`` or a test asks for it.
"""

__version__ = "0.1.0"
