"""The server process `churn serve` becomes: BentoML's own CLI, with dead workers replaced fast.

BentoML runs its workers under a circus arbiter created with `check_delay=10`: circus reaps and
respawns a dead worker only in its periodic check, so a killed scorer stayed dead for up to 10 s
before its ~5 s start began (benchmarks/soak.py measured 16 s from kill to answer; the target is
15 s). Here the check runs every second.

BentoML keeps 10 s because a check that falls while another arbiter command runs (the start of
the workers, which takes seconds) raises circus' ConflictError, logged with a traceback each
time. The check here is skipped, not raised, while such a command runs: it has nothing to do
then, and the next one comes a second later.

`_bentoml_impl.server.serving.serve_http` imports `create_standalone_arbiter` when it is
called, so replacing the module's attribute before the CLI runs is enough (BentoML 1.4).
"""

from __future__ import annotations

import sys
from typing import Any

CHECK_DELAY_S = 1.0  # seconds between two circus checks of the workers (BentoML's: 10)


def _guarded(arbiter: Any) -> None:
    """Make the arbiter's periodic check skip while another arbiter command runs."""
    manage = arbiter.manage_watchers

    def manage_watchers() -> Any:
        if arbiter._restarting or arbiter._exclusive_running_command is not None:
            return None
        return manage()

    arbiter.manage_watchers = manage_watchers  # the controller reads it when it starts


def install() -> None:
    """Replace BentoML's arbiter factory by one that checks every CHECK_DELAY_S (idempotent)."""
    from bentoml._internal.utils import circus

    if getattr(circus.create_standalone_arbiter, "_checks_fast", False):
        return
    original = circus.create_standalone_arbiter

    def create_standalone_arbiter(watchers: list, **kwargs: Any) -> Any:
        kwargs.setdefault("check_delay", CHECK_DELAY_S)
        arbiter = original(watchers, **kwargs)
        _guarded(arbiter)
        return arbiter

    create_standalone_arbiter._checks_fast = True  # type: ignore[attr-defined]
    circus.create_standalone_arbiter = create_standalone_arbiter


def main() -> None:
    """`python -m serving.launcher serve ...`: BentoML's CLI with `install()` applied."""
    install()
    from bentoml_cli.cli import cli

    sys.argv[0] = "bentoml"
    sys.exit(cli())


if __name__ == "__main__":
    main()
