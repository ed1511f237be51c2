from __future__ import annotations

import os
from pathlib import Path

from cdr_stream.ops.tls import tls_context
from tests.tls import make_certificates


def test_clients_that_verify_with_the_same_files_share_one_context(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    assert tls_context() is tls_context()
    assert tls_context(certificates.ca_file) is tls_context(certificates.ca_file)
    assert tls_context(certificates.ca_file) is not tls_context()
    with_key = tls_context(certificates.ca_file, certificates.cert_file, certificates.key_file)
    assert with_key is not tls_context(certificates.ca_file)


def test_a_changed_file_gives_a_new_context_that_trusts_what_it_now_holds(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = make_certificates(tmp_path / "first")
    second = make_certificates(tmp_path / "second")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(first.ca_file.read_bytes())
    before = tls_context(ca_file)
    ca_file.write_bytes(second.ca_file.read_bytes())
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later write, whatever the clock
    after = tls_context(ca_file)
    assert after is not before
    # The same CA name, a new authority: its serial number tells them apart.
    assert [cert["serialNumber"] for cert in after.get_ca_certs()] != [
        cert["serialNumber"] for cert in before.get_ca_certs()
    ]
