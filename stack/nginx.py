"""A private nginx from Debian's package, serving the site config we ship
(``deploy/nginx/patchbay.conf``) in front of console nodes on loopback.

Of the shipped site only the upstream's ``server`` lines and the ``listen`` port are
rewritten; everything else (stickiness, websocket headers, timeouts, failover) is
tested exactly as it is deployed. A minimal main config of ours wraps it: pid file, logs
and temp folders inside one folder, ``daemon off`` so nginx stays our child.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from stack.processes import dies_with_us, stop_process, wait_for_port

NGINX = "/usr/sbin/nginx"
ADDRESS = "127.0.0.1"
PROJECT_DIR = Path(__file__).resolve().parent.parent
SITE_CONFIG = PROJECT_DIR / "deploy" / "nginx" / "patchbay.conf"
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_UPSTREAM_BLOCK = re.compile(r"^\s*upstream\s+\S+\s*\{.*?^\s*\}", re.MULTILINE | re.DOTALL)
_SERVER_LINE = re.compile(r"^([ \t]*)server\s+[^;{]+;[^\n]*\n", re.MULTILINE)
_LISTEN_LINE = re.compile(r"^([ \t]*)listen\s+[^;]+;", re.MULTILINE)


def available() -> bool:
    """Is Debian's nginx installed?"""
    return Path(NGINX).is_file()


def _quoted(path: Path) -> str:
    """A path as an nginx string (double-quoted)."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_site(site: str, port: int, upstream_ports: list[int]) -> str:
    """The shipped site config with its upstream pointing at 127.0.0.1:<each upstream
    port> and listening on 127.0.0.1:``port``; every other line as shipped."""
    if not upstream_ports:
        raise ValueError("nginx needs at least one upstream port")
    upstreams = _UPSTREAM_BLOCK.findall(site)
    listens = _LISTEN_LINE.findall(site)
    if len(upstreams) != 1 or len(listens) != 1:
        raise ValueError(f"{SITE_CONFIG} should have one upstream block and one listen "
                         f"line, not {len(upstreams)} and {len(listens)}")
    block = upstreams[0]
    servers = list(_SERVER_LINE.finditer(block))
    if not servers:
        raise ValueError(f"the upstream in {SITE_CONFIG} has no server lines")
    indent = servers[0].group(1)
    ours = "".join(f"{indent}server {ADDRESS}:{upstream};\n" for upstream in upstream_ports)
    new_block = (block[:servers[0].start()] + ours
                 + _SERVER_LINE.sub("", block[servers[0].start():]))
    site = site.replace(block, new_block)
    return _LISTEN_LINE.sub(lambda line: f"{line.group(1)}listen {ADDRESS}:{port};", site)


class PrivateNginx:
    """nginx on 127.0.0.1:``port`` proxying to console nodes on 127.0.0.1:<each of
    ``upstream_ports``>, with everything it writes in ``directory``."""

    def __init__(self, directory: Path, port: int, upstream_ports: list[int]) -> None:
        self.directory = Path(directory).absolute()
        self.port = port
        self.upstream_ports = list(upstream_ports)
        self.site_path = self.directory / "patchbay.conf"
        self.main_path = self.directory / "nginx.conf"
        self.pid_path = self.directory / "nginx.pid"
        self.error_log = self.directory / "error.log"
        self.access_log = self.directory / "access.log"
        self.output_path = self.directory / "nginx.out"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def write_config(self) -> None:
        """Render the shipped site and our main config into ``directory``."""
        for kind in TEMP_KINDS:
            (self.directory / "temp" / kind).mkdir(parents=True, exist_ok=True)
        self.site_path.write_text(render_site(SITE_CONFIG.read_text(), self.port,
                                              self.upstream_ports))
        self.main_path.write_text(self._main_config())

    def check_config(self) -> str:
        """``nginx -t`` on the rendered config; returns its output, RuntimeError with
        that output if nginx refuses the config."""
        if not available():
            raise RuntimeError(f"{NGINX} is not installed (Debian: apt-get install nginx)")
        self.write_config()
        done = subprocess.run([*self._command(), "-t"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30, check=False)
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise RuntimeError(f"nginx refuses the config in {self.directory} "
                               f"(nginx -t exit {done.returncode}):\n{output}")
        return output

    def start(self, timeout: float = 30) -> None:
        """Check the config, start nginx, and return once it is our nginx that listens.
        RuntimeError (with its log) if it exits or does not listen in time."""
        if self.process is not None and self.process.poll() is None:
            return
        self.check_config()
        self.pid_path.unlink(missing_ok=True)
        with open(self.output_path, "ab") as output:
            # Its own session: a Ctrl-C at the terminal reaches whoever runs us, and
            # they stop nginx in their own order.
            self.process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL,
                                            stdout=output, stderr=subprocess.STDOUT,
                                            start_new_session=True,
                                            preexec_fn=dies_with_us())
        try:
            deadline = time.monotonic() + timeout
            wait_for_port(ADDRESS, self.port, timeout=timeout, process=self.process)
            self._wait_for_pid_file(deadline)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise RuntimeError(f"nginx did not start on port {self.port}: {error}\n"
                               f"{self.log_tail()}") from None

    def reload(self) -> None:
        """SIGHUP, as ``nginx -s reload`` sends: new workers take new connections, the
        old ones finish what they serve (a websocket until it closes) and exit."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("nginx is not running")
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGTERM (fast shutdown: open connections are closed), and wait for it."""
        process, self.process = self.process, None
        stop_process(process)

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for path in (self.output_path, self.error_log):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no nginx log)"

    def _command(self) -> list[str]:
        # -e: the error log before the config is read (Debian's default is stderr).
        return [NGINX, "-p", f"{self.directory}/", "-c", str(self.main_path),
                "-e", str(self.error_log)]

    def _main_config(self) -> str:
        temp = "\n".join(f"    {kind}_temp_path {_quoted(self.directory / 'temp' / kind)};"
                         for kind in TEMP_KINDS)
        # Workers write the temp folders. As root they would run as `nobody`, who may
        # not even reach our folder (pytest's are mode 700), so they stay root: this
        # nginx listens on loopback only.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return (f"{user}daemon off;\n"
                "worker_processes 1;\n"
                f"pid {_quoted(self.pid_path)};\n"
                f"error_log {_quoted(self.error_log)} notice;\n"
                "events {\n    worker_connections 1024;\n}\n"
                "http {\n"
                f"    access_log {_quoted(self.access_log)};\n"
                f"{temp}\n"
                f"    include {_quoted(self.site_path)};\n"
                "}\n")

    def _wait_for_pid_file(self, deadline: float) -> None:
        """nginx writes its pid file once it listens: the one listening is ours (the
        port check alone would also be met by another server on the port)."""
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self.process.returncode}")
            text = self.pid_path.read_text().strip() if self.pid_path.exists() else ""
            if text == str(self.process.pid):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not write its pid to {self.pid_path}")
            time.sleep(0.05)  # polling interval of a deadline loop
