"""The dependency floors in setup.cfg are versions the test suite has passed on, and the installed ones meet them."""

import configparser
import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version


SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
# The lowest version of each that the suite has passed on, and what the code needs from it. A floor below these is
# a promise nobody has tested: lower one only after running the suite there, and lower it here too.
TESTED_FLOORS = {
    "transformers": ("5.23", "expert banks' layout flags (gpt-oss), `activation_checkpointing` in TrainingArguments"),
    "trl": ("1.16", "`SFTConfig.trust_remote_code`, SFTTrainer's model-card hooks"),
    "peft": ("0.21", "`target_parameters` / `ParamWrapper` for MoE expert banks"),
    "datasets": ("5.2", "the suite's version"),
    "accelerate": ("1.15", "the suite's version (ZeRO-2/3 on CPU tests)"),
    "deepspeed": ("0.19.8", "the suite's version; ZeRO-3 with frozen parameters needs >= 0.19.3"),
}


def _requirements() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config["options"]["install_requires"].splitlines()
    lines += [line for extra in config["options.extras_require"].values() for line in extra.splitlines()]
    requirements = [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]
    return {requirement.name: requirement for requirement in requirements}


@pytest.mark.parametrize("name", sorted(TESTED_FLOORS))
def test_floor_is_a_tested_version_and_installed_one_meets_it(name):
    requirement = _requirements()[name]
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    tested, needed_for = TESTED_FLOORS[name]
    assert floors and floors[0] >= Version(tested), (
        f"{requirement} allows untested versions below {tested} ({needed_for})"
    )
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"installed {name} {installed} fails {requirement}"
    )
