from setuptools import setup

setup(cffi_modules=["pyraftlog/_build.py:ffibuilder"])
