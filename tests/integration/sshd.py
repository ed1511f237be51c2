"""A real OpenSSH server for the SFTP tests: Debian's sshd on a loopback port, with its own configuration,
host key and client key in a temporary directory.

Password authentication needs a real account (sshd checks the system's password database), so the
tests use a dedicated system user, `cdr-sftp-test` (no shell, home /var/lib/cdr-sftp-test), created on
first use. Its password is drawn anew for every test session and locked again at the end. The server
accepts that user only, serves SFTP only, and listens on 127.0.0.1 only. Creating the user and starting
sshd need root, as CI and the development machines have; dev/sshd/install installs sshd when missing.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "dev" / "sshd" / "install"
SSHD = Path("/usr/sbin/sshd")
USER = "cdr-sftp-test"
HOME = Path("/var/lib") / USER


class SshdError(Exception):
    """The test sshd could not be set up; the message says what failed."""


@dataclass
class SshServer:
    host: str
    port: int
    username: str
    password: str
    #: The client's private key (ed25519, encrypted with `passphrase`), listed in authorized_keys.
    client_key: Path
    passphrase: str
    known_hosts: Path
    #: A known_hosts file that lists another key for this server.
    wrong_known_hosts: Path
    log: Path
    process: subprocess.Popen[bytes]

    def new_directory(self) -> Path:
        """An empty directory the SFTP user can read, for one test's files."""
        directory = HOME / f"t-{uuid.uuid4().hex[:10]}"
        directory.mkdir(mode=0o755)
        return directory


def _run(*command: str, stdin: str | None = None) -> None:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise SshdError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ensure_user(password: str) -> None:
    try:
        subprocess.run(["id", USER], capture_output=True, check=True)
    except subprocess.CalledProcessError:
        _run("useradd", "--system", "--home-dir", str(HOME), "--create-home", "--shell", "/usr/sbin/nologin", USER)
    HOME.mkdir(mode=0o755, exist_ok=True)
    HOME.chmod(0o755)
    _run("chpasswd", stdin=f"{USER}:{password}\n")


def keygen(path: Path, passphrase: str = "") -> str:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


def start_sshd(workdir: Path) -> SshServer:
    if not SSHD.exists():
        _run(str(INSTALL))
    password = secrets.token_urlsafe(18)
    passphrase = secrets.token_urlsafe(12)
    _ensure_user(password)
    keygen(workdir / "host_key")
    keygen(workdir / "other_host_key")
    client_public = keygen(workdir / "client_key", passphrase)
    ssh_dir = HOME / ".ssh"
    ssh_dir.mkdir(mode=0o755, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(client_public + "\n")
    (ssh_dir / "authorized_keys").chmod(0o644)

    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {workdir / 'host_key'}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "UsePAM no",
                "PermitRootLogin no",
                f"AllowUsers {USER}",
                # The temporary directory belongs to root with a mode sshd's strict checks would refuse.
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    _run(str(SSHD), "-t", "-f", str(config))
    log = workdir / "sshd.log"
    with log.open("ab") as out:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SshdError(f"sshd did not start on port {port}:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)
    host_public = (workdir / "host_key.pub").read_text().split()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    other_public = (workdir / "other_host_key.pub").read_text().split()
    wrong_known_hosts = workdir / "wrong_known_hosts"
    wrong_known_hosts.write_text(f"[127.0.0.1]:{port} {other_public[0]} {other_public[1]}\n")
    return SshServer(
        host="127.0.0.1",
        port=port,
        username=USER,
        password=password,
        client_key=workdir / "client_key",
        passphrase=passphrase,
        known_hosts=known_hosts,
        wrong_known_hosts=wrong_known_hosts,
        log=log,
        process=process,
    )


def stop_sshd(server: SshServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
    # The password was for this session only; the test files go with it.
    subprocess.run(["usermod", "--lock", USER], capture_output=True, check=False)
    for directory in HOME.glob("t-*"):
        shutil.rmtree(directory, ignore_errors=True)
