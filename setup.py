"""keras-ebnn packaging: `keras_ebnn/` is the package, `exporters/` is installed as
`keras_ebnn.exporters` and the C runtime `runtime_c/` as package data `keras_ebnn.runtime_c`."""
from setuptools import setup

setup(
    name="keras-ebnn",
    version="0.1.0",
    description="Train binarized neural networks with Keras/Larq and export them as small, exact C "
                "for microcontrollers (eBNN-style fused blocks).",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=["keras_ebnn", "keras_ebnn.exporters", "keras_ebnn.runtime_c"],
    package_dir={"keras_ebnn": "keras_ebnn", "keras_ebnn.exporters": "exporters",
                 "keras_ebnn.runtime_c": "runtime_c"},
    package_data={"keras_ebnn.runtime_c": ["*.c", "*.h", "*.md", "avr/*.c", "avr/*.h"],
                  "keras_ebnn.exporters": ["*.npz"]},
    include_package_data=False,
    # larq 0.14 pins numpy<2, which has no Python 3.13 wheels: there larq is installed without its
    # pin by `python -m keras_ebnn.setup_larq` (the Makefile runs it; see that module).
    install_requires=["numpy", "tensorflow>=2.16", "tf-keras", "larq>=0.13; python_version < '3.13'",
                      "packaging", "terminaltables"],
    extras_require={"test": ["pytest", "optuna>=3.2", "psycopg2-binary"], "plot": ["matplotlib"],
                    "search": ["optuna>=3.2"], "postgresql": ["psycopg2-binary"],
                    # examples/sensor_1d reads the UEA datasets aeon bundles (keras_ebnn.uea; only its
                    # data files are used, so `pip install --no-deps aeon` is enough)
                    "sensor": ["aeon"]},
    entry_points={"console_scripts": ["keras-ebnn-convert=keras_ebnn.convert:main",
                                      "keras-ebnn-search=keras_ebnn.search:main"]},
)
