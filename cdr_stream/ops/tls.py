"""TLS client contexts, shared by every client of the process that verifies with the same files.

Each context holds its own copy of the CA bundle, close to 1 MB: one per feed (its HTTP session) and per
Kafka client was a third of what an idle feed held. A context is made again when one of its files
changes, so a renewed certificate is picked up by the next client, as before.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path

_FileStamp = tuple[str, int] | None


def tls_context(
    cafile: Path | None = None, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """A verifying client context for these files (the system's CA bundle without `cafile`)."""
    return _context(_stamp(cafile), _stamp(certfile), _stamp(keyfile))


def _stamp(path: Path | None) -> _FileStamp:
    if path is None:
        return None
    try:
        return str(path), os.stat(path).st_mtime_ns
    except OSError:
        return str(path), -1  # let the context's own load say what is wrong with it


@lru_cache(maxsize=16)
def _context(cafile: _FileStamp, certfile: _FileStamp, keyfile: _FileStamp) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile[0] if cafile else None)
    if certfile:
        context.load_cert_chain(certfile[0], keyfile[0] if keyfile else None)
    return context
