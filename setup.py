"""Two extensions, both from csrc/ (pyraftlog/_build.py says how): the
engine's core through cffi (pyraftlog._pyraftlog_c), and pyraftlog._objects
(csrc/objects.c: Entry objects to and from records, the only C that touches
Python objects)."""
import importlib.util
import pathlib

from setuptools import setup

_spec = importlib.util.spec_from_file_location(
    "pyraftlog_build", pathlib.Path(__file__).resolve().parent / "pyraftlog" / "_build.py")
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)

setup(cffi_modules=["pyraftlog/_build.py:ffibuilder"], ext_modules=[_build.objects_extension()])
