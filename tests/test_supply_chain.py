"""Releases known to be bad stay out: lightning 2.6.2 and 2.6.3 were published with a credential
stealer (GHSA-w37p-236h-pfx3); the pin excludes them and the installed version is not one of them."""
from __future__ import annotations

from importlib.metadata import version

import tomllib
from packaging.requirements import Requirement

from tests.conftest import ROOT

BAD = {"lightning": ["2.6.2", "2.6.3"]}


def test_known_bad_releases_are_excluded_and_not_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for name, releases in BAD.items():
        spec = next(r.specifier for r in requirements if r.name == name)
        assert not any(spec.contains(v) for v in releases), f"{name}{spec} admits {releases}"
        assert version(name) not in releases, f"installed {name} {version(name)} is a known-bad release"
        assert spec.contains("2.6.6")  # and a good release still installs
