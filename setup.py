"""keras-ebnn packaging: `keras_ebnn/` is the package, `exporters/` is installed as
`keras_ebnn.exporters` and the C runtime `runtime_c/` as package data `keras_ebnn.runtime_c`.

Every file under runtime_c/ and every non-Python file under exporters/ is package data (listed by
walking the folders, so a new runtime file or sub-folder cannot be left out of the wheel or the
sdist); tests/test_packaging.py compares the built wheel and sdist with the tree."""
import os

from setuptools import setup

PACKAGE_DIR = {"keras_ebnn": "keras_ebnn", "keras_ebnn.exporters": "exporters", "keras_ebnn.runtime_c": "runtime_c"}


def packages_and_data(package_dir=PACKAGE_DIR, here=os.path.dirname(os.path.abspath(__file__))):
    """(packages, package_data) of the mapped folders, walked: every folder holding an __init__.py is a
    package (sub-packages included), every other file but Python sources and byte code is data of the
    nearest package at or above its folder ('/'-separated paths relative to that package's folder)."""
    packages, data = [], {}
    for pkg, folder in package_dir.items():
        root = os.path.join(here, folder)
        owner = {root: (pkg, root)}  # folder -> (package name, package folder) its files belong to
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.endswith(".egg-info"))
            if d != root and "__init__.py" in files:
                rel = os.path.relpath(d, root).split(os.sep)
                owner[d] = (".".join([pkg] + rel), d)
            elif d != root:
                owner[d] = owner[os.path.dirname(d)]
            name, base = owner[d]
            if "__init__.py" in files:
                packages.append(name)
            data.setdefault(name, []).extend(os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")
                                             for f in sorted(files) if not f.endswith((".py", ".pyc")))
    return packages, {k: v for k, v in data.items() if v}


PACKAGES, PACKAGE_DATA = packages_and_data()


setup(
    name="keras-ebnn",
    version="0.1.0",
    description="Train binarized neural networks with Keras/Larq and export them as small, exact C "
                "for microcontrollers (eBNN-style fused blocks).",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data=PACKAGE_DATA,
    include_package_data=False,
    # larq 0.14 pins numpy<2, which has no Python 3.13 wheels: there larq is installed without its
    # pin by `python -m keras_ebnn.setup_larq` (the Makefile runs it; see that module).
    install_requires=["numpy", "tensorflow>=2.16", "tf-keras", "larq>=0.13; python_version < '3.13'",
                      "packaging", "terminaltables", "Pillow"],
    extras_require={"test": ["pytest", "pytest-xdist", "optuna>=3.2", "psycopg2-binary"], "plot": ["matplotlib"],
                    "search": ["optuna>=3.2"], "postgresql": ["psycopg2-binary"],
                    # examples/sensor_1d reads the UEA datasets aeon bundles (keras_ebnn.train.uea; only its
                    # data files are used, so `pip install --no-deps aeon` is enough)
                    "sensor": ["aeon"]},
    entry_points={"console_scripts": ["keras-ebnn-convert=keras_ebnn.convert:main",
                                      "keras-ebnn-search=keras_ebnn.train.search:main"]},
)
