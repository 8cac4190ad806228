"""What an admitted agent may ask of the space: the checks of :class:`onitu.sync.majordomo.grants.Grant` alone."""

from __future__ import annotations

import pytest

from onitu.space.errors import Refused
from onitu.space.template import Range
from onitu.sync import tuples
from onitu.sync.majordomo.grants import Grant


@pytest.fixture
def grant() -> Grant:
    return Grant("laptop", {"laptop-files": {"docs": ""}}, receives=True)


def test_an_agent_may_see_which_of_its_own_reports_wait(grant: Grant) -> None:
    """A plug holds its listing while its reports wait for the referee (:meth:`Outbox.hold`): it reads them back."""
    grant.check_template("read_all", (tuples.REPORT, "laptop-files", "plug-id", Range(None, 40), None))


@pytest.mark.parametrize(("op", "template", "why"), [
    ("read_all", (tuples.REPORT, "hub", "plug-id", Range(None, 40), None), "not one of its services"),
    ("read_all", (tuples.REPORT, None, None, None, None), "not one of its services"),
    ("take", (tuples.REPORT, "laptop-files", "plug-id", 3, None), "may not take"),
    ("read", (tuples.REPORT, "laptop-files", "plug-id", 3, None), "may not read"),
    ("read_all", (tuples.REPORT, "laptop-files", None), "may not read_all"),
])
def test_other_reads_of_reports_are_refused(grant: Grant, op: str, template: tuple, why: str) -> None:
    with pytest.raises(Refused, match=why):
        grant.check_template(op, template)
