"""Install capc and build its C++ part (the garbled-circuit engine in ``gc-emp-test/``).

``pip install -e ".[dev]"`` installs the Python package with its dependencies, configures and builds
``gc-emp-test/`` with CMake (programs into ``gc-emp-test/bin/``, the pybind11 module ``capc.gc._engine``
next to the package), compiles the small pybind11 module ``capc.he._rns`` (exact limb kernels of the
batch HE engine) and registers the ``capc`` console script. A missing compiler, CMake or OpenSSL
header stops the build with one message naming the Debian package to install.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
GC_SOURCE = ROOT / "gc-emp-test"
GC_BUILD = ROOT / "build" / "gc-emp-test"


class BuildFailure(SystemExit):
    """Stops the build with a readable message instead of a compiler traceback."""


def _require_tool(names: tuple[str, ...], debian: str, what: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BuildFailure(
        f"\ncapc: cannot build the garbled-circuit engine: no {what} found ({' or '.join(names)}).\n"
        f"      On Debian/Ubuntu: apt-get install {debian}   (or run: bash scripts/setup.sh)\n")


class CMakeBuild(build_ext):
    """Build ``gc-emp-test`` with CMake and place the pybind11 module where Python imports it."""

    def build_extension(self, ext: Extension) -> None:  # noqa: D102 - setuptools hook
        if ext.name != "capc.gc._engine":
            return super().build_extension(ext)
        if not (GC_SOURCE / "CMakeLists.txt").exists():
            raise BuildFailure(f"capc: {GC_SOURCE}/CMakeLists.txt is missing; the source tree is incomplete")
        cmake = _require_tool(("cmake",), "cmake", "CMake")
        _require_tool(("c++", "g++", "clang++"), "g++", "C++ compiler")
        import pybind11  # build requirement (pyproject.toml)

        # CMake writes the module into the (persistent) build tree; setuptools' own output location
        # may be a temporary directory, so the module is copied there afterwards.
        module_dir = GC_BUILD / "pymodule"
        module_dir.mkdir(parents=True, exist_ok=True)
        # pip builds in a throw-away environment: keep a copy of pybind11's headers and CMake files
        # next to the build, so that `cmake --build build/gc-emp-test` keeps working afterwards.
        kept = GC_BUILD / "pybind11"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(Path(pybind11.__file__).parent, kept, ignore=shutil.ignore_patterns("__pycache__"))
        configure = [
            cmake, "-S", str(GC_SOURCE), "-B", str(GC_BUILD),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DCAPC_GC_PYTHON=ON",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={kept / 'share' / 'cmake' / 'pybind11'}",
            f"-DCAPC_GC_PYMODULE_DIR={module_dir}",
            f"-DCAPC_GC_BIN_DIR={GC_SOURCE / 'bin'}",  # where capc.gc.programs.bin_dir() looks
        ]
        jobs = str(max(1, min(os.cpu_count() or 1, 4)))
        for cmd in (configure, [cmake, "--build", str(GC_BUILD), "-j", jobs]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                log = (result.stdout + result.stderr).strip().splitlines()
                hint = ""
                text = "\n".join(log)
                if "OpenSSL" in text or "openssl/" in text:
                    hint = "\n      OpenSSL headers are missing. On Debian/Ubuntu: apt-get install libssl-dev"
                raise BuildFailure(
                    "\ncapc: building the garbled-circuit engine failed:\n  " + "\n  ".join(log[-25:]) + hint
                    + "\n      (or run: bash scripts/setup.sh)\n")
        built = sorted(module_dir.glob("_engine*.so")) + sorted(module_dir.glob("_engine*.pyd"))
        if not built:
            raise BuildFailure(f"capc: CMake finished but produced no _engine module in {module_dir}")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        if built[0].resolve() != target.resolve():
            shutil.copy2(built[0], target)


def _extensions() -> list[Extension]:
    exts = [Extension("capc.gc._engine", sources=[])] if (GC_SOURCE / "CMakeLists.txt").exists() else []
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError:  # without pybind11 capc.he.raw uses its NumPy path
        return exts
    # exact limb kernels of the batch HE engine (capc.he.raw); built by setuptools itself
    exts.append(Pybind11Extension("capc.he._rns", ["capc/he/_rns.cpp"], cxx_std=17,
                                  extra_compile_args=["-O3"]))
    return exts


def _tensorflow_requirement() -> str:
    # The CPU-only wheel is a third of the size; it exists for x86-64 Linux and Windows.
    if platform.system() in ("Linux", "Windows") and platform.machine().lower() in ("x86_64", "amd64"):
        return "tensorflow-cpu>=2.16"
    return "tensorflow>=2.16"


setup(
    name="capc",
    version="0.1.0",
    description="Confidential and Private Collaborative learning (CaPC): HE inference, garbled-circuit "
                "argmax, privacy guardian with real differential privacy",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["capc", "capc.*"]),
    include_package_data=True,
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "tenseal>=0.3.14",
        _tensorflow_requirement(),
        "libtmux>=0.30",
        "pybind11>=2.11",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
        "cryptography>=42",
        "PyYAML>=6",
    ],
    extras_require={
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.2",
            "hypothesis>=6.80",
            "dp-accounting>=0.4",
            "sympy>=1.12",  # lattice reduction in the circuit-privacy attack test
            "ray>=2.9",  # the fan-out's local-mode test (tests/learning/test_fanout.py)
            # tests/test_notebook.py executes notebooks/capc_walkthrough.ipynb
            "nbformat>=5.9",
            "nbclient>=0.9",
            "ipykernel>=6.25",
        ],
        # Fan-out of party training and retraining over cores / a cluster (capc.learning.fanout),
        # for users who want it without the test tools (its wheel is about 80 MB).
        "ray": ["ray>=2.9"],
    },
    # The engine is part of every complete source tree; the guard only lets a partial checkout install.
    ext_modules=_extensions(),
    cmdclass={"build_ext": CMakeBuild},
    entry_points={"console_scripts": ["capc=capc.cli:main"]},
    zip_safe=False,
)
