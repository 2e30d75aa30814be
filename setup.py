"""The one compiled part of hashbench: the ranking kernel of ``hashbench.retrieval.metrics``.

Everything else is configured in pyproject.toml. The extension is optional: where it cannot
be built (no C compiler or Python headers), installation still succeeds and
``hashbench.retrieval.metrics`` uses its NumPy implementation, which gives identical results, slower.
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hashbench.retrieval._ranking",
            sources=["hashbench/retrieval/_ranking.c"],
            extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
            optional=True,
        )
    ]
)
