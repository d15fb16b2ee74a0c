#!/usr/bin/env python3
"""Try the Ray cluster launcher on this one machine: `ray up` / `ray exec` / `ray down` with configs/cluster-local.yaml
over ssh to 127.0.0.1, running `dfsweep run` on a tiny demo.

    scripts/ray_up_local.py WORKDIR            (needs root, sshd, ssh, ssh-keygen and rsync; `make test-ssh` runs it)

In a private network and PID namespace of its own, with only loopback (it re-runs itself through scripts/isolated.sh,
also when already in one: the `ray stop` of `ray up` and `ray down` stops every Ray it can see, and must see only
this run's):
  1. starts a throwaway sshd on 127.0.0.1:22: host key, authorized key, sshd_config and the login's HOME all live in
     WORKDIR; /etc/ssh and ~/.ssh are neither read nor written (Debian's sshd insists on /run/sshd: made if missing);
  2. writes WORKDIR/cluster.yaml from configs/cluster-local.yaml (placeholders filled in, nothing else changed);
  3. `ray get-auth-token --generate` (the cluster's token, in the client's ~/.ray/auth_token, never printed), `ray up
     -y --no-config-cache` (which copies the token to the head and starts Ray in token mode), then `ray exec` of
     `dfsweep demo-data` and of `dfsweep run RUN --address auto --submit --config tiny.yaml --source ... --target ...`;
  4. checks that every planned trial wrote its scores and that summary.json exists, and, through `ray dashboard`'s
     ssh port forward, that the dashboard asks for the token and, given it, lists the submitted run;
  5. `ray down -y`, checks that no Ray process is left, stops sshd.
Each command's output goes to WORKDIR/logs/<step>.log; WORKDIR/result.json records what happened. Exit status 0
only when every step passed. The namespace ends with this script, taking any leftover process with it.
"""

from __future__ import annotations

import argparse
import ctypes
import getpass
import hashlib
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "configs" / "cluster-local.yaml"
# What the head's `ray exec` commands export: ssh forwards no environment (see the yaml's comments).
# RAY_AUTH_MODE=token comes from the ~/.bashrc line the yaml's setup_commands write, as it would for a user.
RAY_ENV = "export RAY_USAGE_STATS_ENABLED=0;"
DASHBOARD_PORT = 8266  # `ray dashboard`'s local end: the head's own 8265 is in use on this one machine
# Small and fast on 2 CPUs: 71 px, few epochs, no degraded test sets, one seed, V1 and V2.
TINY = {
    "prepare": {"crop_size_px": 80, "min_face_px": 40, "face_workers": 2},
    "train": {"input_size_px": 71, "head_epochs": 2, "finetune_epochs": 1, "batch_size": 8,
              "test_perturbations": {"jpeg": [], "blur": [], "noise": []}, "export_model": False},
    "sweep": {"variants": ["v1", "v2"], "seeds": [1], "cpus_per_trial": 1},
    "report": {"bootstrap_samples": 200},
}


def only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def ray_processes() -> list[str]:
    """Command lines of Ray's processes visible here (in a PID namespace: only this run's)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd.startswith("ray::") or any(k in cmd for k in ("/raylet", "gcs_server", "ray/autoscaler/_private/monitor",
                                                            "ray/_private/log_monitor", "dashboard/agent")):
            found.append(f"{entry}: {cmd}")
    return found


class OrphanReaper:
    """Reap the Ray daemons that `ray start` leaves behind when it exits.

    They are orphans; without this they would go to the namespace's PID 1 (this script, or pytest), which never
    waits for them, so after `ray stop` they linger as zombies and `ray stop` waits its whole grace period for them.
    As a child subreaper this process adopts them and waits for the ones it did not start itself (Popen waits for
    those: `spawn` registers them under the lock, so their exit status is never taken here).
    """

    def __init__(self) -> None:
        self.own: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        pr_set_child_subreaper = 36
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        with self.lock:
            proc = subprocess.Popen(argv, **kw)
            self.own.add(proc.pid)
        return proc

    def check(self, argv: list[str]) -> None:
        """subprocess.check_call, through spawn."""
        rc = self.spawn(argv, stdin=subprocess.DEVNULL).wait()
        if rc:
            raise subprocess.CalledProcessError(rc, argv)

    def _zombie_children(self) -> list[int]:
        me, found = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                state, ppid = stat.rsplit(")", 1)[1].split()[:2]
                if state == "Z" and int(ppid) == me:
                    found.append(int(entry))
        return found

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            with self.lock:
                for pid in self._zombie_children():
                    if pid not in self.own:
                        try:
                            os.waitpid(pid, os.WNOHANG)
                        except ChildProcessError:
                            pass


def gcs_env(*names: str) -> dict[str, str | None]:
    """Some environment variables of the running gcs_server: what the ssh-started `ray start` really had."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() != "gcs_server":
                    continue
                env = dict(kv.split("=", 1) for kv in Path(f"/proc/{entry}/environ").read_bytes().decode(
                    errors="replace").split("\0") if "=" in kv)
            except OSError:
                continue
            return {n: env.get(n) for n in names}
    return {}


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check_dashboard(ray: str, cluster: Path, name: str, env: dict, token: str, reaper: "OrphanReaper",
                    log: Path) -> dict:
    """Reach the head's dashboard as the README says, through `ray dashboard` (an ssh port forward, here to
    DASHBOARD_PORT): what it asks of a browser, /api/jobs/ without and with the token, and the jobs it lists."""
    base = f"http://127.0.0.1:{DASHBOARD_PORT}"
    found: dict = {"mode": None}
    with open(log, "w") as fh:
        proc = reaper.spawn([ray, "dashboard", "--port", str(DASHBOARD_PORT), "-n", name, "--no-config-cache",
                             str(cluster)], stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while found["mode"] is None:  # the forward is up once the dashboard answers through it
            try:
                status, body = _get(f"{base}/api/authentication_mode")
                found["mode"] = json.loads(body).get("authentication_mode") if status == 200 else None
            except (OSError, ValueError):
                pass
            if found["mode"] is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    found["error"] = f"no answer through the port forward (see {log})"
                    return found
                time.sleep(0.5)
        found["jobs_without_token"] = _get(f"{base}/api/jobs/")[0]
        status, body = _get(f"{base}/api/jobs/", token)
        found["jobs_with_token"] = status
        if status == 200:
            found["jobs"] = [{"type": j.get("type"), "status": j.get("status"), "entrypoint": j.get("entrypoint"),
                              "job_name": (j.get("metadata") or {}).get("job_name")} for j in json.loads(body)]
        return found
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fill_template(text: str, user: str, key: Path, venv: Path) -> str:
    return text.replace("__SSH_USER__", user).replace("__SSH_KEY__", str(key)).replace("__VENV__", str(venv))


class Runner:
    def __init__(self, work: Path, env: dict[str, str], reaper: OrphanReaper):
        self.work, self.env, self.reaper = work, env, reaper
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.steps: list[dict] = []

    def __call__(self, name: str, argv: list[str], timeout: float) -> bool:
        log = self.logs / f"{name}.log"
        print(f"== {name}: {shlex.join(argv)}", flush=True)
        t0 = time.monotonic()
        with open(log, "w") as fh:
            proc = self.reaper.spawn(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = "timeout"
        secs = round(time.monotonic() - t0, 1)
        self.steps.append({"step": name, "rc": rc, "seconds": secs, "log": str(log)})
        lines = log.read_text(errors="replace").splitlines()
        for line in lines[-(12 if rc == 0 else 40):]:
            print(f"   {line}")
        print(f"== {name}: rc={rc} in {secs} s", flush=True)
        return rc == 0


def start_sshd(ssh_dir: Path, home: Path, user: str, log: Path, reaper: OrphanReaper) -> tuple[subprocess.Popen, Path]:
    """A throwaway sshd on 127.0.0.1:22 (free: this namespace has its own ports); returns it and the client key."""
    ssh_dir.mkdir(parents=True, exist_ok=True)
    for name in ("host_ed25519", "id_ed25519"):
        (ssh_dir / name).unlink(missing_ok=True)
        (ssh_dir / f"{name}.pub").unlink(missing_ok=True)
        reaper.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dfsweep-{name}", "-f",
                      str(ssh_dir / name)])
    shutil.copy(ssh_dir / "id_ed25519.pub", ssh_dir / "authorized_keys")
    config = ssh_dir / "sshd_config"
    config.write_text("\n".join([
        "# Throwaway sshd of scripts/ray_up_local.py: loopback only, this key only, nothing from /etc/ssh.",
        "ListenAddress 127.0.0.1",
        "Port 22",
        f"HostKey {ssh_dir / 'host_ed25519'}",
        f"PidFile {ssh_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # The keys live in a temp dir whose modes sshd would otherwise check.
        "StrictModes no",
        "X11Forwarding no",
        # Sessions get their own HOME: `ray up` writes ~/ray_bootstrap_*, setup appends to ~/.bashrc; none of it
        # must land in the real home directory.
        f"SetEnv HOME={home}",
        "",
    ]))
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # Debian's privilege-separation directory
    reaper.check([sshd, "-t", "-f", str(config)])
    proc = reaper.spawn([sshd, "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start (see {log})")
            time.sleep(0.1)
    return proc, ssh_dir / "id_ed25519"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", type=Path, help="Everything goes here: keys, cluster.yaml, demo data, run, logs.")
    ap.add_argument("--venv", type=Path, default=Path(sys.prefix),
                    help="venv with dfsweep and Ray 2.60 (default: the one running this script).")
    ap.add_argument("--weights", type=Path, default=REPO / ".weights" / "xception_imagenet_notop.weights.h5",
                    help="Offline ImageNet Xception weights (make setup writes them).")
    ap.add_argument("--people", type=int, default=8, help="Demo people per domain (even).")
    ap.add_argument("--photos", type=int, default=3, help="Demo photos per person.")
    ap.add_argument("--keep-ray-tmp", action="store_true", help="Keep Ray's session files (logs) afterwards.")
    args = ap.parse_args()

    if os.environ.pop("DFSWEEP_RAY_UP_ISOLATED", None) != "1":
        # A namespace of its own (nested if need be), where this script is PID 1.
        os.environ["DFSWEEP_RAY_UP_ISOLATED"] = "1"
        cmd = [str(REPO / "scripts" / "isolated.sh"), sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        os.execv(cmd[0], cmd)
    if not only_loopback() or os.getpid() != 1:
        print("error: not in a private loopback-only network and PID namespace (scripts/isolated.sh could not make "
              "one); refusing to start sshd and Ray where they could be reached from outside", file=sys.stderr)
        return 2
    for tool in ("ssh", "ssh-keygen", "rsync"):
        if not shutil.which(tool):
            print(f"error: {tool} not found (apt-get install openssh-server rsync)", file=sys.stderr)
            return 2
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        print("error: sshd not found (apt-get install openssh-server)", file=sys.stderr)
        return 2
    if not args.weights.is_file():
        print(f"error: {args.weights} is missing (make setup writes it)", file=sys.stderr)
        return 2

    t_start = time.monotonic()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    venv = args.venv.absolute()  # not resolved: a venv's bin/python is a symlink to the base interpreter
    user = pwd.getpwuid(os.geteuid()).pw_name
    home = work / "home"  # the ssh login's HOME ("the head machine's home")
    home.mkdir(exist_ok=True)
    # Ray's session files go to a short path (socket paths are limited to ~107 bytes) outside /tmp/ray, so this run
    # cannot meet another Ray on the machine; the client (`ray up` keeps the local provider's node list there) and
    # the head's sessions must agree on it.
    ray_tmp = Path(tempfile.mkdtemp(prefix="dfs-rayup-"))
    # What stands for the head machine's own environment: this run's Ray temp dir, and this checkout's dfsweep
    # (whatever the venv has installed). The cluster's own settings are in the yaml, not here.
    (home / ".bashrc").write_text(
        "# Written by scripts/ray_up_local.py: the environment of the test's ssh logins.\n"
        f"export RAY_TMPDIR={shlex.quote(str(ray_tmp))}\n"
        f"export PYTHONPATH={shlex.quote(str(REPO))}\n"
        "export TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2\n")
    # The launcher's own files stay in WORKDIR too: `ray down` always writes a config cache to $TMPDIR/ray-config-*.
    for d in ("client-home", "client-tmp"):
        (work / d).mkdir(exist_ok=True)
    # TERM=dumb travels with ssh's pty request: the head's rich output (spinners, colours) stays plain in the logs.
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "HOME": str(work / "client-home"), "TMPDIR": str(work / "client-tmp"), "TERM": "dumb"}
    env.pop("RAY_ADDRESS", None)
    # A cluster name of its own: the launcher keeps its ssh ControlMaster socket in /tmp/ray_ssh_<user>/<cluster>
    # (fixed, not under TMPDIR), which another run of the same name elsewhere on the machine would share.
    name = f"dfsweep-local-{os.urandom(4).hex()}"
    control_dir = (Path("/tmp") / f"ray_ssh_{hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]}"
                   / hashlib.sha256(name.encode()).hexdigest()[:10])  # as ray.autoscaler's SSHCommandRunner names it
    ray = str(venv / "bin" / "ray")
    cluster = work / "cluster.yaml"
    demo, run_dir, tiny = work / "demo", work / "run", work / "tiny.yaml"
    result: dict = {"workdir": str(work), "ray_tmp": str(ray_tmp), "cluster_name": name, "ok": False}
    reaper = OrphanReaper()
    step = Runner(work, env, reaper)
    sshd = None
    try:
        sshd, key = start_sshd(work / "ssh", home, user, work / "logs" / "sshd.log", reaper)
        cluster.write_text(f"# Filled in from {TEMPLATE} by scripts/ray_up_local.py.\n"
                           + fill_template(TEMPLATE.read_text(), user, key, venv))
        import yaml

        sys.path.insert(0, str(REPO))
        from dfsweep.config import config_from_dict
        from dfsweep.orchestrator.sweep import plan_trials

        tiny_cfg = {**TINY, "train": {**TINY["train"], "weights": str(args.weights.resolve())}}
        tiny.write_text(yaml.safe_dump(tiny_cfg, sort_keys=False))
        planned = [t["trial_id"] for t in plan_trials(config_from_dict(tiny_cfg))]
        result["planned_trials"] = planned

        ssh = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", f"{user}@127.0.0.1"]
        # The token, made on the client as Ray's docs say (its stdout, the token, is not logged).
        client_token = work / "client-home" / ".ray" / "auth_token"
        made = reaper.spawn([ray, "get-auth-token", "--generate"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env).wait()
        step.steps.append({"step": "token", "rc": made, "seconds": 0, "log": ""})
        ok = (made == 0 and client_token.is_file()
              and step("ssh-check", ssh + ["echo ssh ok: $(whoami) HOME=$HOME"], 60)
              and step("ray-up", [ray, "up", "-y", "--no-config-cache", "-n", name, "--log-color", "false",
                                  str(cluster)], 600)
              and step("ray-exec-demo", [ray, "exec", "--no-config-cache", "-n", name, "--log-color", "false",
                                         str(cluster), f"{RAY_ENV} command -v dfsweep && "
                                         "python -c 'import dfsweep; print(\"dfsweep from\", dfsweep.__file__)' && "
                                         f"dfsweep demo-data {shlex.quote(str(demo))} --people-per-domain {args.people}"
                                         f" --photos-per-person {args.photos}"], 600)
              and step("ray-exec-run", [ray, "exec", "--no-config-cache", "-n", name, "--log-color", "false",
                                        str(cluster), f"{RAY_ENV} dfsweep run {shlex.quote(str(run_dir))} --address auto "
                                        "--submit "
                                        f"--config {shlex.quote(str(tiny))} --source {shlex.quote(str(demo / 'source'))}"
                                        f" --target {shlex.quote(str(demo / 'target'))}"], 1800))
        scores = sorted(p.stem for p in (run_dir / "scores").glob("*.parquet"))
        result["scores"] = scores
        result["summary_json"] = (run_dir / "summary.json").is_file()
        ok = ok and scores == sorted(planned) and result["summary_json"]
        print(f"== check: scores for {scores} (planned {planned}); summary.json "
              f"{'present' if result['summary_json'] else 'MISSING'}", flush=True)
        result["ray_processes_before_down"] = len(ray_processes())
        result["gcs_server_env"] = gcs_env("RAY_AUTH_MODE", "RAY_TMPDIR", "PYTHONPATH")
        head_token = home / ".ray" / "auth_token"
        result["head_token_is_the_clients"] = head_token.is_file() and (
            head_token.read_text().strip() == client_token.read_text().strip())
        result["dashboard"] = check_dashboard(ray, cluster, name, env, client_token.read_text().strip(), reaper,
                                              work / "logs" / "ray-dashboard.log")
        print(f"== dashboard through `ray dashboard`: {json.dumps(result['dashboard'])}", flush=True)
    except Exception as exc:  # noqa: BLE001 - reported, then the cluster is still taken down
        print(f"error: {exc!r}", file=sys.stderr)
        result["error"] = repr(exc)
        ok = False
    finally:
        if cluster.exists() and sshd is not None:
            down = step("ray-down", [ray, "down", "-y", "-n", name, "--log-color", "false", str(cluster)], 300)
            deadline = time.monotonic() + 30
            while ray_processes() and time.monotonic() < deadline:
                time.sleep(0.5)
            left = ray_processes()
            result["ray_processes_after_down"] = left
            print(f"== after ray down: {len(left)} Ray process(es) left" + "".join(f"\n   {p[:200]}" for p in left))
            ok = ok and down and not left
            if left:  # do not leave a cluster behind, whatever happened
                reaper.spawn([ray, "stop", "--force"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).wait()
        if sshd is not None:
            sshd.terminate()
            try:
                sshd.wait(10)
            except subprocess.TimeoutExpired:
                sshd.kill()
        shutil.rmtree(control_dir, ignore_errors=True)
        try:
            control_dir.parent.rmdir()  # shared by every cluster of this user: only when empty
        except OSError:
            pass
        if not args.keep_ray_tmp and ok:
            shutil.rmtree(ray_tmp, ignore_errors=True)
        result.update(ok=bool(ok), steps=step.steps, seconds=round(time.monotonic() - t_start, 1))
        (work / "result.json").write_text(json.dumps(result, indent=1))
        print(f"== {'PASSED' if ok else 'FAILED'} in {result['seconds']} s; details in {work / 'result.json'}"
              + ("" if ok else f"; Ray's logs in {ray_tmp}/ray/session_latest/logs"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
