"""Real multi-process Flink and Spark clusters on localhost, for the runner tests.

* ``FlinkCluster``: a Flink 1.19 session cluster, a JobManager and N
  TaskManagers, each its own JVM, started the way Flink's own scripts start
  them (``BashJavaUtils`` computes each process's memory flags from the
  configuration), from the distribution's ``lib/`` (PyPI's
  ``apache-flink-libraries`` ships it as ``deps/lib``).
* ``SparkCluster``: a Spark 3.5 standalone cluster, a master and N workers,
  each its own JVM, from PyPI's ``pyspark`` (its ``jars/``).

Both give their SDK workers' processes an environment whose ``python`` is
this interpreter, for Beam's ``PROCESS`` environment: each TaskManager or
executor starts its own SDK workers through Beam's boot program, so the work
runs outside the launching process, as on a real cluster. (An ``EXTERNAL``
worker pool shared by two TaskManagers of one machine does not work: both ask
it for workers with the same ids, and stopping one stops the other's.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def worker_environment() -> dict:
    """The environment of a cluster process whose SDK workers run this
    interpreter's Python (its virtualenv first on the PATH; Beam's boot
    program installs nothing into a fresh virtualenv but uses this one)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    env["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


class FlinkCluster:
    """A Flink session cluster on localhost.

    Args:
        home: the Flink distribution: ``lib/`` (``flink-dist-*.jar`` and
            friends) and ``bin/bash-java-utils.jar``.
        workdir: where its configuration and logs go.
        taskmanagers: TaskManager processes.
        slots: task slots each.
    """

    def __init__(self, home: str, workdir: str, *, taskmanagers: int = 2, slots: int = 2):
        self.lib = os.path.join(home, "lib")
        self.bash_utils = os.path.join(home, "bin", "bash-java-utils.jar")
        self.workdir = workdir
        self.taskmanagers = taskmanagers
        self.slots = slots
        self.rest_port = free_port()
        self.conf = os.path.join(workdir, "conf")
        self.logs = os.path.join(workdir, "log")
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def master(self) -> str:
        """``--flink_master`` for this cluster."""
        return f"localhost:{self.rest_port}"

    def _java_opts(self) -> list[str]:
        """The ``--add-opens``/``--add-exports`` flags Flink's own configuration
        gives every JVM (Java 17)."""
        dist = next(f for f in os.listdir(self.lib) if f.startswith("flink-dist"))
        text = zipfile.ZipFile(os.path.join(self.lib, dist)).read("config.yaml").decode()
        line = next(ln for ln in text.splitlines() if ln.strip().startswith("all: --add"))
        return line.split(":", 1)[1].split()

    def _resource_params(self, which: str) -> tuple[list[str], list[str]]:
        """Flink's own memory computation (what its scripts call): the JVM flags
        and the dynamic properties of a JobManager or TaskManager."""
        out = subprocess.run(
            [
                "java",
                "-cp",
                f"{self.bash_utils}:{os.path.join(self.lib, '*')}",
                "org.apache.flink.runtime.util.bash.BashJavaUtils",
                which,
                "-c",
                self.conf,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results = [
            ln.split(":", 1)[1] for ln in out.splitlines() if ln.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")
        ]
        return results[0].split(), results[1].split()

    def _write_config(self) -> None:
        os.makedirs(self.conf, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        config = {
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": free_port(),
            "jobmanager.bind-host": "localhost",
            "rest.address": "localhost",
            "rest.bind-address": "localhost",
            "rest.port": self.rest_port,
            "blob.server.port": free_port(),
            "taskmanager.bind-host": "localhost",
            "taskmanager.host": "localhost",
            "taskmanager.numberOfTaskSlots": self.slots,
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.memory.process.size": "1728m",
            # Spread a job's tasks over every TaskManager, not the first one's slots.
            "cluster.evenly-spread-out-slots": "true",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": 3,
            "restart-strategy.fixed-delay.delay": "2 s",
            # Notice a killed TaskManager within seconds.
            "heartbeat.interval": 1000,
            "heartbeat.timeout": 8000,
        }
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            for key, value in config.items():
                f.write(f"{key}: {value}\n")
        with open(os.path.join(self.conf, "log4j.properties"), "w") as f:
            f.write(
                "rootLogger.level = INFO\n"
                "rootLogger.appenderRef.file.ref = File\n"
                "appender.file.name = File\n"
                "appender.file.type = File\n"
                "appender.file.fileName = ${sys:log.file}\n"
                "appender.file.layout.type = PatternLayout\n"
                "appender.file.layout.pattern = %d %-5p %c - %m%n\n"
            )

    def _start(self, name: str, main: str, which: str) -> None:
        jvm, dynamic = self._resource_params(which)
        log = os.path.join(self.logs, f"{name}.log")
        command = [
            "java",
            *self._java_opts(),
            *jvm,
            f"-Dlog.file={log}",
            f"-Dlog4j.configurationFile=file:{os.path.join(self.conf, 'log4j.properties')}",
            "-cp",
            os.path.join(self.lib, "*"),
            main,
            "-c",
            self.conf,
            *dynamic,
        ]
        out = open(os.path.join(self.logs, f"{name}.out"), "w")
        self.processes[name] = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=worker_environment(), cwd=self.workdir
        )

    def start(self, timeout: float = 120) -> FlinkCluster:
        self._write_config()
        self._start(
            "jobmanager",
            "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
            "GET_JM_RESOURCE_PARAMS",
        )
        for i in range(self.taskmanagers):
            self._start(
                f"taskmanager-{i}",
                "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                "GET_TM_RESOURCE_PARAMS",
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"Flink {name} exited ({process.returncode}); see {self.logs}")
            try:
                overview = self.rest("/overview")
                if overview["taskmanagers"] == self.taskmanagers:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Flink cluster did not come up within {timeout} s; see {self.logs}")

    def rest(self, path: str):
        return _get_json(f"http://localhost:{self.rest_port}{path}")

    def jobs(self) -> list[dict]:
        return self.rest("/jobs")["jobs"]

    def taskmanagers_of(self, job_id: str) -> set[str]:
        """The TaskManagers that ran a subtask of the job (its vertices' ``/taskmanagers``)."""
        ids = set()
        for vertex in self.rest(f"/jobs/{job_id}")["vertices"]:
            for tm in self.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]:
                ids.add(tm.get("taskmanager-id") or tm.get("resource-id"))
        return ids

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class SparkCluster:
    """A Spark standalone cluster on localhost: a master and ``workers`` workers.

    Args:
        home: a Spark installation (``pyspark``'s package directory: ``jars/``).
        workdir: where logs and the workers' directories go.
        workers: worker processes.
        cores: cores each worker offers.
    """

    def __init__(self, home: str, workdir: str, *, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.home = home
        self.workdir = workdir
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.port = free_port()
        self.ui_port = free_port()
        self.worker_ui_ports = [free_port() for _ in range(workers)]
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def master(self) -> str:
        """``--spark_master_url`` for this cluster."""
        return f"spark://localhost:{self.port}"

    def apps_by_worker(self) -> dict[str, set[str]]:
        """Per worker, the applications it ran executors for (running or
        finished), from each worker's own JSON API."""
        out = {}
        for i, port in enumerate(self.worker_ui_ports):
            state = _get_json(f"http://localhost:{port}/json/")
            executors = state.get("executors", []) + state.get("finishedexecutors", [])
            out[f"worker-{i}"] = {e["appid"] for e in executors}
        return out

    def _start(self, name: str, args: list[str]) -> None:
        os.makedirs(os.path.join(self.workdir, "log"), exist_ok=True)
        env = worker_environment()
        env["SPARK_HOME"] = self.home
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        env["SPARK_LOG_DIR"] = os.path.join(self.workdir, "log")
        out = open(os.path.join(self.workdir, "log", f"{name}.out"), "w")
        self.processes[name] = subprocess.Popen(
            [os.path.join(self.home, "bin", "spark-class"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )

    def start(self, timeout: float = 120) -> SparkCluster:
        self._start(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "localhost",
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui_port),
            ],
        )
        for i in range(self.workers):
            self._start(
                f"worker-{i}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "localhost",
                    "--cores",
                    str(self.cores),
                    "--memory",
                    self.memory,
                    "--webui-port",
                    str(self.worker_ui_ports[i]),
                    "--work-dir",
                    os.path.join(self.workdir, f"work-{i}"),
                    self.master,
                ],
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"Spark {name} exited ({process.returncode}); see {self.workdir}/log")
            try:
                state = self.state()
                if len([w for w in state["workers"] if w["state"] == "ALIVE"]) == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Spark cluster did not come up within {timeout} s; see {self.workdir}/log")

    def state(self) -> dict:
        """The master's state (``/json``: workers, applications)."""
        return _get_json(f"http://localhost:{self.ui_port}/json/")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def have_java() -> bool:
    return shutil.which("java") is not None
