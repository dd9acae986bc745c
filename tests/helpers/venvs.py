"""Build the package (sdist, wheel) from a copy of the tree and install it into a fresh venv.

The fresh venv ("overlay venv") is made with `python -m venv --without-pip` and gets a .pth file that
appends the site-packages of the interpreter running the tests: the third-party dependencies
(TensorFlow, larq, numpy, pip) come from there, without a download. Only a plain path line is
written, so that environment's own .pth files (e.g. the editable install's import hook) are NOT run:
`import keras_ebnn` in the overlay resolves to what was installed into the overlay itself, whose
site-packages comes first on sys.path.
"""
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE_FILES = ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in")


def package_dirs():
    """{package: folder} exactly as setup.py maps them (its PACKAGE_DIR, read without running setup())."""
    import ast
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PACKAGE_DIR" for t in node.targets):
            return {k: ROOT / v for k, v in ast.literal_eval(node.value).items()}
    raise AssertionError("setup.py defines no PACKAGE_DIR")


def run(cmd, cwd=None, env=None, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} (exit {proc.returncode})\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def clean_env(**extra):
    """The environment for a child that must not see the work tree (no PYTHONPATH, no user site)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


def copy_source(dest):
    """The files a build reads (setup.py, pyproject.toml, README.md and the mapped package folders) copied
    to `dest`, so the build's by-products (build/, *.egg-info) never land in the work tree."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_FILES:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for folder in {p.name for p in package_dirs().values()}:
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)
    return dest


def _backend(hook, src, out):
    """Run a PEP 517 hook of the backend pyproject.toml names (setuptools.build_meta) in `src`."""
    code = (f"import sys; from setuptools import build_meta as b; "
            f"print(b.{hook}(sys.argv[1]))")
    name = run([sys.executable, "-c", code, str(out)], cwd=src, env=clean_env()).strip().splitlines()[-1]
    return Path(out) / name


def build_sdist(src, out):
    return _backend("build_sdist", src, out)


def build_wheel(src, out):
    return _backend("build_wheel", src, out)


def site_dirs():
    """The site-packages folders the running interpreter imports from (where the dependencies are
    installed): its own, the user's, and any on sys.path (e.g. added by the .pth of an overlay venv)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    dirs += [p for p in sys.path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")]
    return [d for i, d in enumerate(dirs) if os.path.isdir(d) and d not in dirs[:i]]


def overlay_venv(path, base_site_dirs=None):
    """A new venv at `path` whose own site-packages comes first and the running interpreter's
    site-packages after it (plain .pth path lines). Returns (python, purelib folder)."""
    path = Path(path)
    run([sys.executable, "-m", "venv", "--without-pip", path])
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       env=clean_env()).strip())
    (purelib / "_ebnn_overlay_deps.pth").write_text(
        "\n".join(base_site_dirs or site_dirs()) + "\n")
    return python, purelib


def pip_install(python, *args):
    """pip of the base environment (reached through the .pth), installing into the overlay venv."""
    return run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                *args], env=clean_env())


def scripts_dir(python):
    return Path(python).parent



def main(argv=None):
    """`python tests/helpers/venvs.py VENV` (what `make venv-from` runs): an overlay venv at VENV on the
    running interpreter's installed packages, with this checkout installed editable into it: a second
    checkout (e.g. a git worktree) gets its own keras_ebnn without downloading the dependencies again."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__.split(":")[0])
    ap.add_argument("venv")
    args = ap.parse_args(argv)
    python, purelib = overlay_venv(args.venv)
    pip_install(python, "--no-build-isolation", "-e", ROOT)
    print(f"{python}: keras_ebnn from {ROOT}, other packages from {', '.join(site_dirs())}")


if __name__ == "__main__":
    main()
