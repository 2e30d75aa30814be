"""The ``hashbench`` command line: ``main`` (run, plan, report, list, compare, doctor) and ``data``."""
