"""The dependency floors in setup.cfg are the versions the test suite runs on: each floor is the installed version's
major.minor (or that version exactly), so a floor never promises a version nobody has tested."""

import configparser
import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
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


def _floor(requirement: Requirement) -> Version:
    """The requirement's one floor (`>=` or `==`): the version the suite runs on."""
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==")]
    assert len(floors) == 1, f"{requirement}: give one floor (>= or ==), the version the suite runs on"
    return floors[0]


@pytest.mark.parametrize("name", sorted(_requirements()))
def test_floor_is_the_tested_version(name):
    requirement, core = _requirements()[name]
    floor = _floor(requirement)
    try:
        installed = Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        if core:
            raise
        pytest.skip(f"{name} (an extra) is not installed here, so no floor of it is tested")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"installed {name} {installed} fails {requirement}"
    )
    assert floor.release[:2] == installed.release[:2], (
        f"{requirement}: not the tested {name} {installed}; set the floor to >={installed.major}.{installed.minor}"
    )


CONSTRAINTS = SETUP_CFG.parent / "constraints.txt"


def _pins() -> dict[str, Version]:
    """What `make install` installs, by canonical name: constraints.txt's pins, and torch from the Makefile's
    `TORCH_SPEC` (installed first, on its own, so that no range pulls a CUDA build)."""
    makefile = (SETUP_CFG.parent / "Makefile").read_text(encoding="utf-8")
    (torch_spec,) = [line.split("?=")[1] for line in makefile.splitlines() if line.startswith("TORCH_SPEC ?=")]
    pins = {}
    for line in [torch_spec, *CONSTRAINTS.read_text(encoding="utf-8").splitlines()]:
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} should pin one version with =="
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


@pytest.mark.parametrize("name", sorted(_requirements()))
def test_make_install_pins_the_floor(name):
    """A floor and the pin `make install` uses move together: a pin outside the floor's minor would test another
    version than setup.cfg promises."""
    requirement, _ = _requirements()[name]
    pins = _pins()
    assert canonicalize_name(name) in pins, f"{name} is in setup.cfg but not pinned in constraints.txt"
    pinned = pins[canonicalize_name(name)]
    assert requirement.specifier.contains(pinned, prereleases=True), (
        f"constraints.txt's {name}=={pinned} fails {requirement}"
    )
    assert _floor(requirement).release[:2] == pinned.release[:2], (
        f"{requirement}: constraints.txt pins {name}=={pinned}"
    )
