# Type hints prepended to a VM test script before mypy checks it, as nixpkgs' driver.nix does with
# nixos/lib/test-script-prepend.py (followed there by one `<machine>: QemuMachine;` per node). Only
# the symbols vm-tests/hosts_driver.py gives a script are declared, with upstream's types.
import os  # noqa: F401 (for the script that follows)
from contextlib import contextmanager
from typing import Callable, Generator

from test_driver.machine import BaseMachine, QemuMachine  # noqa: F401 (for the script)



def retry(fn: Callable, timeout_seconds: int = 900) -> None:
    pass


def start_all() -> None:
    return


@contextmanager
def subtest(str: str) -> Generator[None, None, None]:
    yield
