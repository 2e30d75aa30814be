"""Built-in attack plugins, one file each, registered through the ``hashbench.attacks`` entry points."""
