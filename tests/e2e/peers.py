"""Real peers for the end-to-end tests, each on a free loopback port and
stopped by PID: Prosody or ejabberd, facteur itself, an aiosmtpd relay,
slixmpp clients, smtplib."""

import asyncio
import glob
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit

import slixmpp
from aiosmtpd.controller import Controller
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "mail.example.test"
DOMAIN = "example.test"
SECRET = "e2e-component-secret"
USERS = {"alice": "alicepw", "bob": "bobpw"}


def _ephemeral_low():
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports below the kernel's range for outgoing connections: a port chosen
# there stays free until the test binds it, whereas one from the range can
# be taken meanwhile by any client socket (facteur's, Prosody's, a test's).
PORTS = range(10000, max(10001, _ephemeral_low()))


def free_port(*hosts):
    """A TCP port free on every one of `hosts` (default 127.0.0.1)."""
    hosts = hosts or ("127.0.0.1",)
    for _ in range(200):
        port = random.choice(PORTS)
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port on {hosts}")


def wait_port(port, timeout=15.0, proc=None, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open in {timeout}s")


class PgCluster:
    """PostgreSQL for the stores of the tests: the server named by
    FACTEUR_TEST_PG when it is set, or else a private cluster
    (tests/peers/pg-cluster: initdb in a temporary directory, a free
    loopback port), stopped by `stop`. `database()` makes a fresh
    database and returns its URL."""

    SCRIPT = ROOT / "tests" / "peers" / "pg-cluster"

    def __init__(self, options="-c fsync=off -c max_connections=300"):
        self.options = options
        self.dir = None
        self.url = os.environ.get("FACTEUR_TEST_PG") or None
        self.shared = self.url is not None
        self.made = []

    def start(self):
        if self.url is not None:
            return
        self.dir = Path(tempfile.mkdtemp(prefix="facteur-pg-"))
        out = subprocess.run([str(self.SCRIPT), "start", str(self.dir), "--port", str(free_port()),
                              "--", self.options],
                             check=True, capture_output=True, text=True, timeout=120)
        self.url = out.stdout.strip()

    def psql(self, sql, url=None):
        """Runs `sql` in the database at `url` (default: the server's own)."""
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url or self.url, "-c", sql],
                       check=True, capture_output=True, timeout=60)

    def database(self):
        name = f"facteur_e2e_{os.getpid()}_{len(self.made)}_{random.randrange(1 << 32):08x}"
        self.psql(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return urlsplit(self.url)._replace(path=f"/{name}").geturl()

    def stop(self):
        if self.shared:
            for name in self.made:
                self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        elif self.dir is not None:
            subprocess.run([str(self.SCRIPT), "stop", str(self.dir)], check=False, timeout=60)
            self.dir = None


def stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def dkim_record(keygen_output):
    """(name, text) of the record `facteur dkim keygen` printed last: the
    text is its quoted strings joined, as a verifier reads it."""
    name, strings = keygen_output.strip().splitlines()[-1].split(" IN TXT ")
    return name.rstrip("."), "".join(strings.split('"')[1::2])


def escaped(address, gateway=GATEWAY):
    """The JID of a mail address at the gateway (XEP-0106)."""
    return address.replace("\\", "\\5c").replace("@", "\\40") + "@" + gateway


class Prosody:
    """Prosody from a template of this folder; `users` maps
    (user, domain) to a password, `values` fills the template's own
    placeholders ({"@NAME@": text})."""

    name = "prosody"

    def __init__(self, workdir, template="prosody.cfg.lua.in", users=None, values=None):
        self.dir = Path(workdir) / "prosody"
        self.c2s = free_port()
        self.component = free_port()
        self.proc = None
        (self.dir / "certs").mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        template = (Path(__file__).parent / template).read_text()
        for key, value in {"@DIR@": str(self.dir), "@C2S@": str(self.c2s),
                           "@COMPONENT@": str(self.component), "@SECRET@": SECRET,
                           **(values or {})}.items():
            template = template.replace(key, value)
        self.config = self.dir / "prosody.cfg.lua"
        self.config.write_text(template)
        if users is None:
            users = {(user, DOMAIN): password for user, password in USERS.items()}
        for (user, domain), password in users.items():
            subprocess.run(["prosodyctl", "--config", str(self.config), "register", user, domain, password],
                           check=True, capture_output=True, timeout=30)

    def start(self):
        self.log = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(["prosody", "-F", "--config", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.c2s, proc=self.proc)
        wait_port(self.component, proc=self.proc)

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()


DEPLOY_EJABBERD = ROOT / "deploy" / "ejabberd-component.yml"


def ejabberd_component_snippet(domain, gateway, port, secret):
    """deploy/ejabberd-component.yml as shipped, with only its placeholders
    (example.org, mail.example.org, port 5347, the secret) replaced: a
    snippet that no longer names one of them fails here."""
    text = DEPLOY_EJABBERD.read_text()
    for placeholder, value in (("mail.example.org", gateway), ("example.org", domain),
                               ("port: 5347", f"port: {port}"), ("a long random secret", secret)):
        assert placeholder in text, f"{DEPLOY_EJABBERD} no longer holds {placeholder!r}"
        text = text.replace(placeholder, value)
    return text


def _descendants(pid):
    """The PIDs of a process's children, theirs, and so on (Linux /proc)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []
    return [d for child in children for d in (child, *_descendants(child))]


def _comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _alive(pid):
    """Whether the process runs (a zombie whose parent is gone counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Ejabberd:
    """ejabberd (Debian's 23.01) as a plain process, with the interface of
    Prosody: `c2s` and `component` ports, `users` maps (user, domain) to a
    password, registered with `ejabberdctl register` at the first start.
    `domain` and `gateway` name the host and facteur's component, declared
    by deploy/ejabberd-component.yml as shipped; `extra` is YAML added
    beside it (say a server-to-server listener), `hosts` other hosts
    served, and `nameserver` the loopback port of the only DNS server it
    asks.

    ejabberdctl runs as the `ejabberd` user, which must own its folder: a
    temporary one outside pytest's (which only root may enter), removed
    by `cleanup` once its logs are copied into `workdir`. Erlang
    distribution listens on a loopback port of its own
    (ERL_DIST_PORT), without epmd, so nothing outlives `stop`: no epmd
    daemon is started, by the server or by ejabberdctl's commands."""

    name = "ejabberd"

    def __init__(self, workdir, users=None, domain=DOMAIN, gateway=GATEWAY, hosts=(), extra="",
                 secret=SECRET, nameserver=None):
        self.workdir = Path(workdir) / "ejabberd"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="facteur-ejabberd-"))
        self.c2s = free_port()
        self.component = free_port()
        self.dist = free_port()
        self.node = f"facteur{self.dist}@localhost"
        self.domain = domain
        self.proc = None
        self.log = None
        (self.dir / "db").mkdir()
        (self.dir / "log").mkdir()
        component = self.dir / "component.yml"
        component.write_text(ejabberd_component_snippet(domain, gateway, self.component, secret))
        local = self.dir / "local.yml"
        # Without an s2s listener nobody connects in; `s2s_access: none`
        # keeps ejabberd from connecting out too.
        local.write_text(extra or "s2s_access: none\n")
        template = (Path(__file__).parent / "ejabberd.yml.in").read_text()
        hosts_yaml = "[" + ", ".join(f'"{h}"' for h in (domain, *hosts)) + "]"
        for key, value in {"@HOSTS@": hosts_yaml, "@C2S@": str(self.c2s),
                           "@INCLUDES@": f'["{component}", "{local}"]'}.items():
            template = template.replace(key, value)
        self.config = self.dir / "ejabberd.yml"
        self.config.write_text(template)
        # Erlang's resolver reads this file (ERL_INETRC): with a
        # `nameserver` port, names it does not find in /etc/hosts are asked
        # of the tests' dnsmasq on that port, and only of it (resolv.conf's
        # servers would be asked first; the empty resolv_conf, first,
        # drops them).
        inetrc = (f'{{resolv_conf, ""}}.\n{{nameserver, {{127,0,0,1}}, {nameserver}}}.\n'
                  "{lookup, [file, dns]}.\n") if nameserver else ""
        (self.dir / "inetrc").write_text(inetrc)
        # The distribution port listens on loopback only.
        (self.dir / "ejabberdctl.cfg").write_text(
            'ERL_OPTIONS="-kernel inet_dist_use_interface {127,0,0,1}"\n')
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", str(self.dir)], check=True, timeout=30)
        if users is None:
            users = {(user, domain): password for user, password in USERS.items()}
        self.users = dict(users)
        self.registered = False

    def _ctl(self, *args):
        return ["ejabberdctl", "--config-dir", str(self.dir), "--config", str(self.config),
                "--ctl-config", str(self.dir / "ejabberdctl.cfg"), "--spool", str(self.dir / "db"),
                "--logs", str(self.dir / "log"), "--node", self.node, *args]

    def _env(self):
        # HOME: the Erlang cookie of this instance, in its own folder.
        return dict(os.environ, ERL_DIST_PORT=str(self.dist), ERL_EPMD_ADDRESS="127.0.0.1",
                    HOME=str(self.dir))

    def ctl(self, *args, timeout=30):
        """Runs an ejabberdctl command against this instance."""
        return subprocess.run(self._ctl(*args), env=self._env(), user="ejabberd", group="ejabberd",
                              extra_groups=[], cwd=self.dir, check=True, capture_output=True,
                              text=True, timeout=timeout)

    def _wait_log(self, needle, since, timeout=30.0):
        deadline = time.monotonic() + timeout
        while needle not in self.log_text()[since:]:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ejabberd exited with {self.proc.returncode}; see {self.workdir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} not in ejabberd's log in {timeout}s")
            time.sleep(0.05)

    def start(self):
        since = len(self.log_text())
        self.log = open(self.workdir / "stdout.log", "ab")
        self.proc = subprocess.Popen(self._ctl("foreground"), env=self._env(), user="ejabberd",
                                     group="ejabberd", extra_groups=[], cwd=self.dir,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            # ejabberd binds its ports before it is ready to serve them:
            # it is once its log says it accepts connections on both.
            for port in (self.c2s, self.component):
                self._wait_log(f"Start accepting TCP connections at 127.0.0.1:{port} ", since)
            if not self.registered:
                for (user, domain), password in self.users.items():
                    self.ctl("register", user, domain, password)
                self.registered = True
        except BaseException:
            self.stop()
            raise

    def stop(self):
        """Stops the Erlang VM by its PID (SIGTERM: a clean shutdown);
        ejabberdctl, its parent, ends with it, and the VM's own helpers
        (erl_child_setup, inet_gethost) are waited for too."""
        if self.proc is None:
            return
        helpers = _descendants(self.proc.pid)
        vms = [pid for pid in helpers if _comm(pid) == "beam.smp"]
        for pid in vms:
            _signal(pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in vms:
                _signal(pid, signal.SIGKILL)
        stop_process(self.proc)
        self.proc = None
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in helpers:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_text(self):
        try:
            return (self.dir / "log" / "ejabberd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self):
        """Stops the server if need be, keeps its logs in `workdir` and
        removes its own folder."""
        self.stop()
        if self.dir.exists():
            shutil.copytree(self.dir / "log", self.workdir / "log", dirs_exist_ok=True)
            shutil.copy(self.config, self.workdir / "ejabberd.yml")
            shutil.rmtree(self.dir, ignore_errors=True)


class Dns:
    """dnsmasq on a loopback port, the only name server facteur asks: it
    answers for the test domains (.test, .net, .org) from the records given
    and NXDOMAIN for any other name of them, and asks nobody else.
    txt: {name: text}; mx: {domain: [(preference, host)]} ("." for a null
    MX); hosts: {name: ip}; srv: {name: [(target, port)]}."""

    LOCAL = ("test", "net", "org", "com", "example")

    def __init__(self, workdir, txt=None, mx=None, hosts=None, srv=None):
        self.port = free_port()
        self.pidfile = Path(workdir) / "dnsmasq.pid"
        Path(workdir).mkdir(parents=True, exist_ok=True)
        args = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                "--listen-address=127.0.0.1", f"--port={self.port}", "--conf-file=/dev/null",
                f"--pid-file={self.pidfile}", "--user=root"]
        args += [f"--local=/{domain}/" for domain in self.LOCAL]
        for name, value in (txt or {}).items():
            # TXT character strings hold 255 bytes at most: split long ones
            # (dnsmasq takes each comma-separated piece as one string).
            pieces = ",".join(value[i:i + 200] for i in range(0, len(value), 200))
            args.append(f"--txt-record={name},{pieces}")
        for domain, exchanges in (mx or {}).items():
            args += [f"--mx-host={domain},{host},{preference}" for preference, host in exchanges]
        for name, ip in (hosts or {}).items():
            args.append(f"--host-record={name},{ip}")
        for name, targets in (srv or {}).items():
            args += [f"--srv-host={name},{target},{port}" for target, port in targets]
        self.args = args
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not start")
            time.sleep(0.05)

    def _answers(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            # A query for "test." NS: any answer means dnsmasq is up.
            query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x02\x00\x01"
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                return bool(s.recv(512))
            except OSError:
                return False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def resolve(self, name, rdtype):
        """The answer of this server alone (dnspython), raising
        NXDOMAIN or NoAnswer as a resolver would."""
        import dns.resolver
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver.resolve(name, rdtype, lifetime=5)

    def txt(self, name):
        answer = self.resolve(name, "TXT")
        return b"".join(b"".join(record.strings) for record in answer)

    def stop(self):
        stop_process(self.proc)


class Relay:
    """An aiosmtpd server standing for the internet: keeps what it receives,
    refuses any recipient named nobody@. While `refusing`, it answers every
    recipient with a 451 and records the attempt in `refused`: a relay that
    is up and able to receive, yet takes nothing."""

    class Handler:
        def __init__(self, relay):
            self.relay = relay

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if self.relay.refusing:
                self.relay.refused.append({"mail_from": envelope.mail_from, "rcpt": address})
                return "451 4.3.0 Try again later"
            if address.startswith("nobody@"):
                return "550 5.1.1 <%s>: no such mailbox" % address
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"

        async def handle_DATA(self, server, session, envelope):
            self.relay.received.append({
                "mail_from": envelope.mail_from,
                "mail_options": list(envelope.mail_options),
                "rcpt_tos": list(envelope.rcpt_tos),
                "raw": envelope.original_content,
                "message": BytesParser(policy=policy.default).parsebytes(envelope.original_content),
            })
            return "250 2.0.0 Stored"

    def __init__(self, host="127.0.0.1", port=None):
        self.host = host
        self.port = port or free_port()
        self.received = []
        self.refusing = False
        self.refused = []
        self.controller = None

    def start(self):
        self.controller = Controller(self.Handler(self), hostname=self.host, port=self.port,
                                     enable_SMTPUTF8=True)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# Far above what the tests send from one address, except where a test
# sets its own.
LIMITS = {"sender_mails_per_hour": 1000000, "client_connections": 5000,
          "client_mails_per_minute": 1000000}


class Facteur:
    """facteur with a generated config: `relay` is an aiosmtpd Relay, or
    None for delivery to MX hosts on `mx_port`; `dns` the Dns it asks;
    `component`, `mail`, `outbound`, `http` and `store` add lines to their
    sections, `retry` replaces keys of the outbound retry schedule;
    `gateway` and `domain` are its component JID and served domain, and
    its SMTP server listens on `smtp_host`:`smtp_port` (a free port by
    default) as `hostname`. Its store is SQLite in `store_dir`, or the
    database at `store_url` (postgres://…)."""

    def __init__(self, workdir, prosody, relay, dns, store_dir=None, fetch_hosts=(), extra="",
                 limits=None, auth="", mx_port=25, mail="", outbound="", http="",
                 fetch_private=True, store="", gateway=GATEWAY, domain=DOMAIN, component="",
                 retry=None, store_url=None,
                 smtp_host="127.0.0.1", smtp_port=None, hostname="mx.example.test", **inbound):
        self.dir = Path(workdir) / "facteur"
        self.dir.mkdir(parents=True, exist_ok=True)
        store_dir = Path(store_dir or self.dir)
        self.gateway = gateway
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port or free_port()
        self.http_port = free_port()
        self.proc = None
        # Set before start: more environment for the process (NOTIFY_SOCKET…).
        self.env = {}
        self.binary = os.environ.get("FACTEUR_BIN", str(ROOT / "target" / "debug" / "facteur"))
        fetch_hosts = "[" + ", ".join(f'"{h}"' for h in fetch_hosts) + "]"
        inbound = {"max_message_size": 200000, "idle_timeout": '"30s"', **inbound}
        inbound_keys = "".join(f"{k} = {v}\n" for k, v in inbound.items())
        limit_keys = "".join(f"{k} = {v}\n" for k, v in {**LIMITS, **(limits or {})}.items())
        relay_key = f'relay = "127.0.0.1:{relay.port}"' if relay is not None else ""
        retry = {"retry_initial": '"1s"', "retry_max": '"2s"', **(retry or {})}
        retry_keys = "".join(f"{k} = {v}\n" for k, v in retry.items())
        self.config = self.dir / "facteur.toml"
        self.config.write_text(f"""
[component]
jid = "{gateway}"
server = "127.0.0.1:{prosody.component}"
secret = "{SECRET}"
ping_interval = "2s"
reconnect_max = "1s"
{component}
[mail]
domains = ["{domain}"]
{mail}
[inbound]
listen = ["{smtp_host}:{self.smtp_port}"]
hostname = "{hostname}"
{inbound_keys}
[outbound]
{relay_key}
mx_port = {mx_port}
{retry_keys}timeout = "10s"
{outbound}
[xmpp]
retry_initial = "1s"
retry_max = "2s"
[http]
listen = "127.0.0.1:{self.http_port}"
storage = "{store_dir}/files"
fetch_hosts = {fetch_hosts}
fetch_private = {str(fetch_private).lower()}
{http}
[store]
url = "{store_url or f'sqlite://{store_dir}/facteur.db'}"
{store}
[dns]
nameservers = ["{dns.address}"]
timeout = "2s"
[limits]
{limit_keys}
[auth]
{auth}
{extra}
""")
        self.logfile = self.dir / "facteur.log"

    def start(self):
        self.log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        log = open(self.logfile, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info,facteur=debug"), **self.env)
        self.proc = subprocess.Popen([self.binary, "run", "--config", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_port(self.smtp_port, proc=self.proc, host=self.smtp_host)

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def kill(self):
        stop_process(self.proc, signal.SIGKILL)
        self.proc = None

    def rss_kib(self):
        """Resident memory of the running facteur, in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def queue(self):
        """What each queue holds, by state: {(queue, state): count}."""
        out = subprocess.run([self.binary, "queue", "--config", str(self.config)],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        return {(q, s): int(n) for q, s, n in (line.split() for line in out.splitlines() if line)}

    def register(self, jid):
        """Registers a user with the admin command, as an operator would."""
        subprocess.run([self.binary, "users", "--config", str(self.config), "add", jid],
                       check=True, capture_output=True, timeout=30)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=60):
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_since_start(self):
        with open(self.logfile, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def log_size(self):
        """Where the log ends now: pass it as `since` to wait for a line
        written after this moment only."""
        return self.logfile.stat().st_size if self.logfile.exists() else 0

    def wait_log(self, needle, timeout=10.0, since=None):
        """Waits for a line of the current run's log, or of the log written
        after the offset `since`; blocking: call it with asyncio.to_thread
        while a client is connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if since is None:
                text = self.log_since_start()
            else:
                with open(self.logfile, "rb") as f:
                    f.seek(since)
                    text = f.read().decode(errors="replace")
            if needle in text:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{needle!r} not in facteur's log")


def send_mail(port, mail_from, rcpts, raw, timeout=15, helo="client.example.net", source=None):
    """Sends raw bytes by SMTP, from the loopback address `source` if
    given; returns (code, text) of the reply to DATA, or of the first
    refused command."""
    source_address = (source, 0) if source else None
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout, source_address=source_address) as smtp:
        smtp.ehlo(helo)
        code, text = smtp.mail(mail_from)
        if code != 250:
            return code, text.decode()
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            if code != 250:
                return code, text.decode()
        code, text = smtp.data(raw)
        return code, text.decode()


def rcpt_reply(port, rcpt, mail_from="bob@example.net"):
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.ehlo("client.example.net")
        smtp.mail(mail_from)
        code, text = smtp.rcpt(rcpt)
        return code, text.decode()


def mail_parser_malformed():
    """The malformed samples shipped in the mail-parser crate's sources."""
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    pattern = os.path.join(home, "registry", "src", "*", "mail-parser-0.11.9", "resources", "eml", "malformed")
    dirs = sorted(glob.glob(pattern))
    return sorted(glob.glob(os.path.join(dirs[0], "*.eml"))) if dirs else []


class Client:
    """A real XMPP client (slixmpp) that records every message it gets."""

    def __init__(self, user, port, domain=DOMAIN, password=None):
        self.jid = f"{user}@{domain}"
        self.xmpp = slixmpp.ClientXMPP(self.jid, password or USERS[user],
                                       plugin_config={"feature_mechanisms": {"unencrypted_scram": True}})
        self.xmpp.enable_direct_tls = False
        self.xmpp.enable_starttls = False
        self.xmpp.enable_plaintext = True
        self.port = port
        self.messages = []
        self.arrived = asyncio.Event()
        self.xmpp.register_handler(Callback("all messages", MatchXPath("{jabber:client}message"), self._on_message))

    def _on_message(self, stanza):
        error = stanza.xml.find("{jabber:client}error")
        condition = None
        if error is not None:
            for child in error:
                if child.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not child.tag.endswith("}text"):
                    condition = child.tag.split("}")[1]
        receipt = stanza.xml.find("{urn:xmpp:receipts}received")
        reply = stanza.xml.find("{urn:xmpp:reply:0}reply")
        mail = stanza.xml.find("{urn:xmpp:mail:0}mail")
        files = []
        for sharing in stanza.xml.findall("{urn:xmpp:sfs:0}file-sharing"):
            meta = sharing.find("{urn:xmpp:file:metadata:0}file")
            source = sharing.find(".//{http://jabber.org/protocol/url-data}url-data")
            files.append({
                "name": meta.findtext("{urn:xmpp:file:metadata:0}name"),
                "media-type": meta.findtext("{urn:xmpp:file:metadata:0}media-type"),
                "size": int(meta.findtext("{urn:xmpp:file:metadata:0}size")),
                "sha-256": meta.findtext("{urn:xmpp:hashes:2}hash"),
                "url": source.get("target") if source is not None else None,
            })
        content = stanza.xml.find("{urn:xmpp:content}content")
        self.messages.append({
            "files": files,
            "oob": [x.findtext("{jabber:x:oob}url") for x in stanza.xml.findall("{jabber:x:oob}x")],
            "html": content.text if content is not None else None,
            "thread": stanza["thread"] or None,
            "reply": (reply.get("to"), reply.get("id")) if reply is not None else None,
            "mail": dict(mail.attrib) if mail is not None else None,
            "auth": (dict(mail.find("{urn:xmpp:mail:0}auth").attrib)
                     if mail is not None and mail.find("{urn:xmpp:mail:0}auth") is not None else None),
            "xml": str(stanza),
            "receipt": receipt.get("id") if receipt is not None else None,
            "from": str(stanza["from"]), "to": str(stanza["to"]), "type": stanza["type"], "id": stanza["id"],
            "subject": stanza["subject"], "body": stanza["body"], "error": condition,
            "error_type": error.get("type") if error is not None else None,
        })
        self.arrived.set()

    async def connect(self):
        self.xmpp.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.xmpp.wait_until("session_start"), 15)
        self.xmpp.send_presence()

    async def iq(self, type_, to, payload_xml, timeout=10):
        iq = self.xmpp.Iq()
        iq["type"] = type_
        if to:
            iq["to"] = to
        iq.append(slixmpp.xmlstream.ET.fromstring(payload_xml))
        return await iq.send(timeout=timeout)

    async def register(self, gateway=GATEWAY):
        result = await self.iq("set", gateway, "<query xmlns='jabber:iq:register'/>")
        assert result["type"] == "result", result

    def send(self, to, body, subject=None, mtype="chat", receipt=False, thread=None, reply=None):
        message = self.xmpp.make_message(mto=to, mbody=body, msubject=subject, mtype=mtype)
        message["id"] = f"e2e-{time.monotonic_ns()}"
        if thread:
            message["thread"] = thread
        if reply:
            message.append(slixmpp.xmlstream.ET.fromstring(
                f"<reply xmlns='urn:xmpp:reply:0' to='{reply[0]}' id='{reply[1]}'/>"))
        if receipt:
            message.append(slixmpp.xmlstream.ET.fromstring("<request xmlns='urn:xmpp:receipts'/>"))
        message.send()
        return message["id"]

    async def wait_for(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message in {timeout}s; got {self.messages}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def disconnect(self):
        self.xmpp.disconnect()
        try:
            await asyncio.wait_for(self.xmpp.disconnected, 5)
        except (asyncio.TimeoutError, TypeError):
            pass


def run(coroutine):
    return asyncio.run(coroutine)


async def registered_client(gateway, user="alice"):
    """A connected client whose user registered with the gateway."""
    client = Client(user, gateway.xmpp.c2s)
    await client.connect()
    await client.register()
    return client


async def wait_until(condition, timeout=15.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(interval)
    return condition()


class Dovecot:
    """Debian's Dovecot with its own configuration, mail and passwd-file,
    IMAP (plain text, which facteur allows to loopback only, and implicit
    TLS with a self-signed certificate) and LMTP on free loopback ports;
    run in the foreground and stopped by PID. `users` maps logins to
    passwords; `set_password` changes one while it runs (Dovecot reads
    the passwd-file again when it changes)."""

    def __init__(self, workdir, users=None):
        # Dovecot's sockets live under base_dir: keep its path short; and
        # its processes (users dovecot and nobody) must reach the
        # passwd-file and the mail, which the test's own directory hides.
        self.run_dir = Path(tempfile.mkdtemp(prefix="dc", dir="/tmp"))
        os.chmod(self.run_dir, 0o755)
        self.dir = self.run_dir
        self.users = dict(users or {"alice": "imap-alice-pw"})
        self.imap, self.imaps, self.lmtp = free_port(), free_port(), free_port()
        self.proc = None
        self.log = self.dir / "dovecot.log"
        # A CA of the test's own (`ca.pem`, trusted only where a test
        # sets SSL_CERT_FILE to it) signs the certificate of localhost.
        d = self.dir
        self.ca = d / "ca.pem"
        for command in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=facteur test CA",
             "-keyout", f"{d}/ca.key", "-out", str(self.ca)],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.csr"],
        ):
            subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=60)
        (d / "cert.ext").write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                                    "basicConstraints = CA:FALSE\n")
        subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/cert.csr", "-CA", str(self.ca),
                        "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-days", "2",
                        "-extfile", f"{d}/cert.ext", "-out", f"{d}/cert.pem"],
                       check=True, capture_output=True, timeout=60)
        self.mail = self.dir / "mail"
        self.mail.mkdir(exist_ok=True)
        os.chown(self.mail, 65534, 65534)
        self._write_users()
        (self.dir / "dovecot.conf").write_text(f"""
base_dir = {self.run_dir}/run
state_dir = {self.run_dir}/state
log_path = {self.log}
instance_name = dovecot-{self.run_dir.name}
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <{self.dir}/cert.pem
ssl_key = <{self.dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
verbose_proctitle = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.dir}/users
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap}
  }}
  inet_listener imaps {{
    port = {self.imaps}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {self.lmtp}
  }}
}}
""")

    def _write_users(self):
        lines = "".join(f"{u}:{{PLAIN}}{pw}:65534:65534::{self.mail}/{u}\n" for u, pw in self.users.items())
        path = self.dir / "users"
        tmp = self.dir / "users.new"
        tmp.write_text(lines)
        os.replace(tmp, path)

    def set_password(self, user, password):
        self.users[user] = password
        self._write_users()

    def start(self):
        out = open(self.dir / "dovecot.stdout", "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
                                     stdout=out, stderr=subprocess.STDOUT)
        for port in (self.imap, self.imaps, self.lmtp):
            wait_port(port, proc=self.proc)

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def deliver(self, raws, rcpt="alice"):
        """Delivers raw mails by LMTP in one session; each must be taken."""
        with smtplib.LMTP("127.0.0.1", self.lmtp, timeout=30) as lmtp:
            for raw in raws:
                refused = lmtp.sendmail("bob@example.net", [rcpt], raw)
                assert not refused, refused

    def doveadm(self, *args):
        return subprocess.run(["doveadm", "-c", str(self.dir / "dovecot.conf"), *args],
                              check=True, capture_output=True, text=True, timeout=30).stdout

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


XMPP_SERVERS = {"prosody": Prosody, "ejabberd": Ejabberd}


class Gateway:
    """An XMPP server (`server`: "prosody" or "ejabberd", built with
    `xmpp_options`) + DNS + relay + facteur, started. `dns` takes the
    keyword arguments of Dns;
    `relay=False` delivers to MX hosts instead."""

    def __init__(self, tmp_path, store_dir=None, fetch_hosts=(), extra="", dns=None, relay=True,
                 server="prosody", xmpp_options=None, **facteur):
        self.xmpp = XMPP_SERVERS[server](tmp_path, **(xmpp_options or {}))
        self.dns = Dns(Path(tmp_path) / "dns", **(dns or {}))
        self.relay = Relay() if relay else None
        self.facteur = Facteur(tmp_path, self.xmpp, self.relay, self.dns, store_dir=store_dir,
                               fetch_hosts=fetch_hosts, extra=extra, **facteur)

    @property
    def prosody(self):
        """The XMPP server, under the name of the tests written for
        Prosody alone."""
        return self.xmpp

    def start(self):
        self.xmpp.start()
        self.dns.start()
        if self.relay is not None:
            self.relay.start()
        self.facteur.start()
        self.facteur.wait_log("Component link up.")

    def stop(self):
        try:
            self.facteur.stop()
            if self.relay is not None:
                self.relay.stop()
        finally:
            self.xmpp.cleanup()
            self.dns.stop()
