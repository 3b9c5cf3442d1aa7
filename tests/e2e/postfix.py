"""A private Postfix instance as a test peer: Debian's `postfix` package,
its own configuration, queue and data directories under a work folder,
listening on loopback ports only, with no system daemon involved.

What Postfix needs to run from another configuration directory, as root
(Postfix 3.7, found on Debian 12):

- `-c DIR` works for root without listing DIR in the default main.cf's
  `alternate_config_directories` (or `multi_instance_directories`):
  Postfix asks for that only when the caller is not root, and only the
  set-gid `postdrop`/`postqueue` would be such callers (not used here).
  /etc/postfix/main.cf need not even exist ("No configuration").
- main.cf names `queue_directory` and `data_directory` (both here),
  `mail_owner = postfix` and `setgid_group = postdrop` (the users and group
  the package created). `meta_directory` stays /etc/postfix: the package's
  `postfix-files` there is what `postfix check` checks against.
- The queue directory must exist and belong to root; `postfix -c DIR
  check` then creates its subdirectories (`active`, `incoming`, `maildrop`
  owned by postfix:postdrop, `public`, ...) with the right owners and
  modes, as `postfix set-permissions` would, and warns about anything
  wrong. The data directory must belong to `postfix`.
- The master opens `data_directory/master.lock` as the mail owner, so the
  postfix user must be able to search every folder above it: pytest's
  `/tmp/pytest-of-root` is 0700, so `start` adds the search bit (o+x, not
  read) to each ancestor that lacks it.
- No syslog here: `maillog_file` (Postfix 3.4+) makes the `postlog`
  service write the log to a file, and `maillog_file_prefixes` must allow
  its folder (the default allows only /var and /dev/stdout).
- `postfix start-fg` keeps a shell in front of the master (`exec` only as
  PID 1), and `postfix stop` works from the pid file; so the master is
  started directly, `master -c DIR -d` (foreground, no detaching), in a
  session of its own: every daemon it forks (smtpd, qmgr, cleanup, ...)
  stays in its process group. `stop` sends SIGTERM to the master (which
  stops its children), then SIGKILL to whatever of the group is left.
- chroot is off (`-` in master.cf, Postfix's default; Debian's own
  master.cf writes `y` and keeps a copy of /etc files in the queue
  directory for it).
"""

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from peers import free_port, wait_port

POSTFIX_UID = "postfix"

# The services a relaying Postfix needs (from Debian's master.cf, chroot
# off); the SMTP listeners are added per instance.
MASTER_CF = """\
pickup    unix  n       -       -       60      1       pickup
cleanup   unix  n       -       -       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       -       -       -       trivial-rewrite
bounce    unix  -       -       -       -       0       bounce
defer     unix  -       -       -       -       0       bounce
trace     unix  -       -       -       -       0       bounce
verify    unix  -       -       -       -       1       verify
flush     unix  n       -       -       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       -       -       -       smtp
relay     unix  -       -       -       -       -       smtp
showq     unix  n       -       -       -       -       showq
error     unix  -       -       -       -       -       error
retry     unix  -       -       -       -       -       error
discard   unix  -       -       -       -       -       discard
anvil     unix  -       -       -       -       1       anvil
scache    unix  -       -       -       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Queue folders where a mail waits; all empty once everything left.
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


class Postfix:
    """A Postfix MTA under `workdir`/postfix. Its SMTP server listens on
    127.0.0.1:`port` (a free port unless given); `main_cf` and `master_cf`
    are appended to the base configuration (a later main.cf line wins);
    `files` maps names to texts written into the configuration folder
    (`conf`), where main.cf can name them as maps. `hostname` is
    myhostname."""

    def __init__(self, workdir, main_cf="", master_cf="", files=None, port=None,
                 hostname="mx.postfix.test"):
        self.dir = Path(workdir) / "postfix"
        self.conf = self.dir / "conf"
        self.queue = self.dir / "queue"
        self.data = self.dir / "data"
        self.maillog = self.dir / "maillog"
        self.port = port or free_port()
        self.proc = None
        self.conf.mkdir(parents=True, exist_ok=True)
        self.queue.mkdir(exist_ok=True)
        self.data.mkdir(exist_ok=True)
        for name, text in (files or {}).items():
            (self.conf / name).write_text(text)
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {hostname}
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local mailboxes here
alias_maps =
alias_database =
smtputf8_enable = yes
# No DNS on the test machines: next hops are IP addresses in brackets.
smtp_dns_support_level = disabled
# Retries come quickly in tests.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{main_cf}
""")
        (self.conf / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - - - - smtpd\n" + MASTER_CF + master_cf)

    def run(self, *args, check=True):
        """Runs a Postfix command (postfix, postmap, postconf, postqueue)
        on this instance's configuration."""
        command, *rest = args
        out = subprocess.run([command, "-c", str(self.conf), *rest], capture_output=True, text=True,
                             timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {out.returncode}\n{out.stdout}{out.stderr}\n"
                               f"{self.log_tail()}")
        return out

    def postmap(self, table):
        """Builds the indexed file of `table` ("hash:/path")."""
        self.run("postmap", table)

    def start(self):
        # The master opens data_directory/master.lock as the mail owner.
        for folder in reversed(self.dir.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)
        os.chmod(self.dir, 0o711)
        os.chown(self.data, *_ids(POSTFIX_UID))
        os.chown(self.queue, 0, 0)
        self.run("postfix", "check")
        daemon_dir = self.run("postconf", "-h", "daemon_directory").stdout.strip()
        self.stdout = open(self.dir / "master.out", "ab")
        self.proc = subprocess.Popen([os.path.join(daemon_dir, "master"), "-c", str(self.conf), "-d"],
                                     stdout=self.stdout, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_port(self.port, proc=self.proc)
        except Exception as e:
            raise RuntimeError(f"{e}\n{self.log_tail()}") from e

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # The daemons the master forked are in its process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None
        self.stdout.close()

    def queued(self):
        """Names of the queue files of mail not yet gone."""
        return sorted(path.name for queue in QUEUES for path in (self.queue / queue).rglob("*")
                      if path.is_file())

    def wait_queue_empty(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Postfix's queue still holds {self.queued()}\n{self.log_tail()}")
            time.sleep(0.1)

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:]) or "(no Postfix log)"

    def wait_log(self, needle, timeout=15.0):
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} not in Postfix's log\n{self.log_tail()}")
            time.sleep(0.1)


def _ids(user):
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
