"""Package layout beyond pyproject.toml: the checkout's top-level data folders go into the package.

``resources/`` and ``firmware/`` stay at the top of the repository (the product card's layout) and
install as the data packages ``fleetdesk._data.resources`` and ``fleetdesk._data.firmware``, read
through ``importlib.resources`` (fleetdesk/paths.py), editable or installed alike.
"""

from pathlib import Path

from setuptools import find_packages, setup

DATA = {"fleetdesk._data.resources": "resources", "fleetdesk._data.firmware": "firmware"}
# The GUI's folder is gui/; its import package is the project's own name, not a generic `gui`.
GUI = {"fleetdesk_gui": "gui"}


def data_packages() -> list[str]:
    """The data packages and every folder under them (listed, so setuptools ships them quietly)."""
    names = []
    for name, folder in DATA.items():
        names.append(name)
        for sub in sorted(Path(folder).rglob("*")):
            if sub.is_dir() and sub.name != "__pycache__":
                names.append(".".join([name, *sub.relative_to(folder).parts]))
    return names


setup(
    packages=find_packages(include=["fleetdesk", "fleetdesk.*"])
    + ["fleetdesk_gui" + name[len("gui"):] for name in find_packages(include=["gui", "gui.*"])]
    + data_packages(),
    package_dir={**DATA, **GUI},
    package_data={name: ["**/*"] for name in DATA},
    exclude_package_data={name: ["**/__pycache__/*", "**/*.pyc"] for name in DATA},
)
