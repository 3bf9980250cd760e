"""The ``filesystem://`` transport durable_celery installs: Kombu's, with atomic publication and
defaults that suit a development broker (a real Kombu connection on a temporary folder)."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection

from durable_celery.transport.filesystem import install_filesystem_transport


def _connect(folder: Path, **options: object) -> Connection:
    install_filesystem_transport()
    return Connection("filesystem://", transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), **options})


def test_defaults_poll_often_and_keep_the_exchange_table_beside_the_messages(tmp_path) -> None:
    with _connect(tmp_path) as conn:
        assert conn.transport.polling_interval == 0.05
        assert conn.default_channel.control_folder == tmp_path / "control"
        queue = conn.SimpleQueue("fs-defaults")
        queue.put({"step": 1})
        message = queue.get(timeout=2)
        assert message.payload == {"step": 1}
        message.ack()
        queue.close()
    assert (tmp_path / "control").is_dir()


def test_transport_options_still_override_the_defaults(tmp_path) -> None:
    elsewhere = tmp_path / "table"
    with _connect(tmp_path, polling_interval=0.5, control_folder=str(elsewhere)) as conn:
        assert conn.transport.polling_interval == 0.5
        assert conn.default_channel.control_folder == elsewhere
