"""Packages bert_tf: installed editable by every `make install*` (`pip install --no-deps -e .`),
so `python -m bert_tf.<tool>` works from any directory, and shipped to Beam workers
(DataflowRunner: --setup_file=./setup.py), which install it with its requirements.
"""

import pathlib

import setuptools

ROOT = pathlib.Path(__file__).resolve().parent
REQUIREMENTS = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

# google-research's tokenization in C (bert_tf/tokenization.py falls back to Python without it).
# An editable install builds it in place, beside bert_tf/tokenization.py (tests/test_setup.py).
WORDPIECE = setuptools.Extension("bert_tf._wordpiece", ["bert_tf/_wordpiece.c"],
                                 extra_compile_args=["-O3"], optional=True)

setuptools.setup(
    name="bert_tf",
    version="0.1.0",
    packages=setuptools.find_packages(include=["bert_tf", "bert_tf.*"]),
    ext_modules=[WORDPIECE],
    install_requires=REQUIREMENTS,
    python_requires=">=3.10",
)
