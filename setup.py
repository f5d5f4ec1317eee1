"""Installs mtrec's five packages and the `mtrec` command.

Extras: `mtrec[text]` (the TextEmbedder's language model), `mtrec[dev]`
(the test and lint tools).
"""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(name):
  with open(os.path.join(HERE, name)) as f:
    return [line.strip() for line in f
            if line.strip() and not line.startswith("#")]


setuptools.setup(
    name="mtrec",
    version="0.1.0",
    description="TFX-style pipeline for multi-task recommenders served over "
                "the TensorFlow Serving gRPC API.",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(
        include=["contracts", "contracts.*", "pipeline", "pipeline.*",
                 "components", "components.*",
                 "trainer", "trainer.*", "serving", "serving.*"]),
    install_requires=_requirements("requirements.txt"),
    # "text": the TextEmbedder's LM (about 1.2 GB), only for configs with
    # text_embedder.enabled; `make demo` installs without it, `make test`
    # and the Docker image with it (requirements-text.txt says how to get
    # the CPU build of torch).
    extras_require={"dev": _requirements("requirements-dev.txt"),
                    "text": _requirements("requirements-text.txt")},
    entry_points={"console_scripts": ["mtrec = pipeline.cli:main"]},
)
