"""Built-in defense plugins, one file each, registered through the ``hashbench.defenses`` entry points."""
