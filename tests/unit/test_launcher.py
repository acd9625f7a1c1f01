"""`churn serve` runs BentoML's CLI through serving.launcher, whose arbiter checks its workers
every second: a killed worker is replaced within about a second, not ten."""

import inspect

from _bentoml_impl.server import serving as bentoml_serving
from bentoml._internal.utils import circus

from serving import launcher


def test_the_arbiter_checks_its_workers_every_second():
    launcher.install()
    launcher.install()  # idempotent: one wrapper, not two
    arbiter = circus.create_standalone_arbiter([])
    assert arbiter.check_delay == launcher.CHECK_DELAY_S == 1.0
    assert circus.create_standalone_arbiter._checks_fast


def test_a_check_during_another_arbiter_command_is_skipped_not_a_conflict_error():
    launcher.install()
    arbiter = circus.create_standalone_arbiter([])
    arbiter._exclusive_running_command = "start"  # the workers are starting
    assert arbiter.manage_watchers() is None  # circus' own would raise ConflictError
    arbiter._exclusive_running_command = None
    arbiter._restarting = True
    assert arbiter.manage_watchers() is None


def test_bentoml_looks_the_factory_up_when_it_serves():
    """The wrapper works only while serve_http imports the factory at call time: an upgrade
    of BentoML that binds it at import fails here, not silently in production."""
    source = inspect.getsource(bentoml_serving.serve_http)
    assert "from bentoml._internal.utils.circus import create_standalone_arbiter" in source
