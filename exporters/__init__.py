"""Back ends that write C, Zephyr and Arduino output (installed as keras_ebnn.exporters).

setup.py maps this folder to keras_ebnn.exporters and runtime_c/ to keras_ebnn.runtime_c: a wheel
installs them inside the package, an editable install (`pip install -e .`, `make setup`) maps them to
the source folders. A source checkout must be installed one of these ways; the check below refuses the
mix that imports `keras_ebnn` from one checkout and these back ends from another (e.g. a second
checkout run with the first one's editable install) instead of silently exporting with the wrong code.
"""
import os as _os
import sys as _sys

_here = _os.path.dirname(_os.path.realpath(__file__))
_package = _os.path.dirname(_os.path.realpath(_sys.modules[__name__.rpartition(".")[0]].__file__))
if _os.path.dirname(_here) not in (_package, _os.path.dirname(_package)):
    raise ImportError(
        f"keras_ebnn is imported from {_package} but keras_ebnn.exporters from {_here}: two different "
        f"checkouts. Install the one you run (pip install -e {_os.path.dirname(_package)}), or run from "
        f"an environment where it is installed (see tests/README.md)")
