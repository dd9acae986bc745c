"""`python -m keras_ebnn.setup_larq`: install larq where pip's resolver cannot (Python >= 3.13).

larq 0.14, the last release, declares `numpy<2.0`, and numpy 1.x has no wheels for Python 3.13, so on
3.13 pip cannot install larq together with the numpy that TensorFlow needs there. larq itself runs on
numpy 2 (its code uses no API that numpy 2 removed; this project's test suite runs on it). So
keras-ebnn's packaging leaves larq out of its requirements on Python >= 3.13 (see setup.py), and this
step installs it without its dependency pin: `pip install --no-deps larq`, its other two dependencies
(packaging, terminaltables) being keras-ebnn's own requirements. On older Pythons, and wherever larq
is already installed, it does nothing. `make demo` / `make test` run it after installing the package.

Exit status: 0 when larq is (now) installed, else pip's non-zero status.
"""
import subprocess
import sys
from importlib import metadata

LARQ = "larq>=0.13,<0.15"


def larq_version():
    """The installed larq's version, or None (read from the metadata: importing larq loads TF)."""
    try:
        return metadata.version("larq")
    except metadata.PackageNotFoundError:
        return None


def main(argv=None):
    del argv
    version = larq_version()
    if version is not None:
        print(f"larq {version} is installed")
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", LARQ]
    print(f"installing larq without its numpy<2 pin (Python {sys.version.split()[0]}): {' '.join(cmd[2:])}")
    code = subprocess.call(cmd)
    if code == 0:
        print(f"larq {larq_version()} is installed")
    return code


if __name__ == "__main__":
    sys.exit(main())
