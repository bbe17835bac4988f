"""The dependency floors in setup.cfg are the versions the test suite runs on: each floor is the installed version's
major.minor (or that version exactly), so a floor never promises a version nobody has tested."""

import configparser
import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version


SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _requirements() -> dict[str, tuple[Requirement, bool]]:
    """Each requirement of setup.cfg, with whether it is a core one (`install_requires`) or an extra's."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    sections = [(config["options"]["install_requires"], True)]
    sections += [(extra, False) for extra in config["options.extras_require"].values()]
    requirements = {}
    for text, core in sections:
        for line in text.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                requirement = Requirement(line)
                requirements.setdefault(requirement.name, (requirement, core))
    return requirements


@pytest.mark.parametrize("name", sorted(_requirements()))
def test_floor_is_the_tested_version(name):
    requirement, core = _requirements()[name]
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==")]
    assert len(floors) == 1, f"{requirement}: give one floor (>= or ==), the version the suite runs on"
    try:
        installed = Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        if core:
            raise
        pytest.skip(f"{name} (an extra) is not installed here, so no floor of it is tested")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"installed {name} {installed} fails {requirement}"
    )
    assert floors[0].release[:2] == installed.release[:2], (
        f"{requirement}: not the tested {name} {installed}; set the floor to >={installed.major}.{installed.minor}"
    )
