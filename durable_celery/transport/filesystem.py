"""Kombu's ``filesystem://`` transport, made safe for several processes.

Kombu's own publisher creates the message file and then writes it; a consumer in another process
may take the file in between and read it empty, and the ``JSONDecodeError`` stops that worker
(``Unrecoverable error``). This transport writes each message under a name no consumer looks at
and renames it into place, so a consumer only ever sees complete messages.
:func:`install_filesystem_transport` makes ``filesystem://`` URLs use it.

Two defaults differ from Kombu's, for a development broker that answers like a real one: the
folders are looked at every 0.05 s (Kombu's one second put up to a second on every workflow
step), and the exchange table (``control_folder``) lives in ``data_folder_in``/``control``
rather than in ``./control`` of whatever directory a process starts in. Both transport options
still override them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu import transport as kombu_transport
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

__all__ = ["Channel", "Transport", "install_filesystem_transport"]


class Channel(filesystem.Channel):  # type: ignore[misc]
    """A filesystem channel whose messages appear in the queue folder atomically."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write ``payload`` to a hidden file, then rename it to its queue name."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".partial-{name}.tmp")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    @property
    def control_folder(self) -> Path:
        """``control_folder`` if given, else ``control`` inside ``data_folder_in``."""
        given = self.transport_options.get("control_folder")
        return Path(given) if given else Path(self.data_folder_in) / "control"


class Transport(filesystem.Transport):  # type: ignore[misc]
    """``filesystem://`` with atomic publication (see :class:`Channel`), polled every 0.05 s
    unless the ``polling_interval`` transport option says otherwise."""

    Channel = Channel
    polling_interval = 0.05


def install_filesystem_transport() -> None:
    """Make ``filesystem://`` broker URLs use :class:`Transport` in this process."""
    target = f"{__name__}:Transport"
    if kombu_transport.TRANSPORT_ALIASES.get("filesystem") != target:
        kombu_transport.TRANSPORT_ALIASES["filesystem"] = target
        kombu_transport._transport_cache.pop(  # type: ignore[attr-defined]
            "filesystem", None)
