"""A plain `pip install .` ships every package: pyproject lists them by hand."""

import tomllib

from conftest import ROOT


def test_every_package_of_the_source_tree_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"convfix.patterns", "convfix.rewrites"}
    source = ROOT / "src" / "convfix"
    for init in source.rglob("__init__.py"):
        parts = init.parent.relative_to(source.parent).parts
        found.add(".".join(parts))
    assert set(config["packages"]) == found
