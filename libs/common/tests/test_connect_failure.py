"""connect_failure: why a database server cannot be reached, or None when it answers."""

from __future__ import annotations

import socket
from pathlib import Path

from powerflow_common.db.engine import connect_failure


def test_a_server_that_answers_has_no_failure(tmp_path: Path) -> None:
    assert connect_failure(f"sqlite:///{tmp_path / 'probe.db'}") is None


def test_a_port_nobody_listens_on_names_the_error() -> None:
    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    failure = connect_failure(f"mysql+pymysql://root@127.0.0.1:{port}/none", timeout_s=1)
    assert failure is not None
    assert failure.startswith("OperationalError: ")
    assert len(failure) <= len("OperationalError: ") + 120
