"""A local AWS for the EMR launcher tests: a moto server on 127.0.0.1 plus a "cluster player".

moto accepts EMR steps but never runs them. The player plays the cluster: it watches moto's
in-process EMR backend (ThreadedMotoServer runs in this process), downloads each submitted
step's bundle and entry script from the emulated S3 as YARN would localize them, runs the same
`spark-submit` on this machine (client mode, local master: there is no YARN here), gives the
driver the `spark.yarn.appMasterEnv.*` variables as its environment, writes EMR-shaped logs
(`steps/<id>/stderr.gz`, `containers/<app>/<container>/stderr.gz`) to the cluster's log URI and
moves the step to COMPLETED, FAILED, CANCELLED or INTERRUPTED.

moto 5.2.5 has no `cancel_steps`; `install_cancel_steps` adds it to moto's EMR API for the
tests: it moves a RUNNING step to CANCEL_PENDING (PENDING ones straight to CANCELLED), and the
player then kills the local spark-submit and marks the step CANCELLED, as EMR does.

EMR Serverless job runs are played the same way. moto starts them in SUCCESS at once;
`serverless_runs_start_submitted` makes them start SUBMITTED so the player can run them, and
moto's own `cancel_job_run` (CANCELLED at once) is what the player watches for.

Test harness only: nothing here is used by the platform.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.core.responses import ActionResult
from moto.emr.models import emr_backends
from moto.emr.responses import ElasticMapReduceResponse
from moto.emrserverless.models import EMRServerlessBackend, emrserverless_backends
from moto.server import ThreadedMotoServer

from clinical_platform.catalog import catalog_settings
from clinical_platform.launchers.aws import S3Uri
from clinical_platform.launchers.local import (
    DEFAULT_CONF,
    DEFAULT_DRIVER_JAVA_OPTIONS,
    JARS_DIR,
    jar_classpath,
    spark_home,
    stop_process_group,
)
from spark_jobs.contracts.layout import LakeLayout
from spark_jobs.contracts.tables import spark_conf


def cluster_defaults(app_args: list[str]) -> dict[str, str]:
    """What EMR's spark-defaults give every step: Iceberg, and the lake's catalog (here the
    local SQLite catalog of the lake named by the job's --lake, or its first stage's)."""
    if "--stage" in app_args:  # the pipeline: each stage's own command line, quoted
        app_args = shlex.split(app_args[app_args.index("--stage") + 1])
    lake = app_args[app_args.index("--lake") + 1] if "--lake" in app_args else None
    return spark_conf(catalog_settings(LakeLayout(lake))) if lake else {}


ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-central-1"
STAGING_BUCKET = "clinical-staging"
STAGING_URI = f"s3://{STAGING_BUCKET}/platform"
LOG_URI = f"s3://{STAGING_BUCKET}/emr-logs/"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
REAL_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_EMR",
)
CLUSTER_ENDED = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
_APP_MASTER_ENV = "spark.yarn.appMasterEnv."
_SERVERLESS_DRIVER_ENV = "spark.emr-serverless.driverEnv."
_OPTIONS_WITH_VALUE = {
    "--deploy-mode",
    "--master",
    "--name",
    "--conf",
    "--py-files",
    "--files",
    "--jars",
    "--archives",
    "--driver-memory",
    "--executor-memory",
    "--num-executors",
    "--executor-cores",
    "--driver-java-options",
    "--class",
    "--packages",
}


# --------------------------------------------------------------------------- moto server


@dataclass(frozen=True)
class AwsEmulator:
    """The running moto server and clients pointed at it (never at AWS)."""

    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def create_bucket(self, name: str = STAGING_BUCKET) -> None:
        self.client("s3").create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )


@contextmanager
def moto_server() -> Iterator[AwsEmulator]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1", host
        yield AwsEmulator(f"http://{host}:{port}")
    finally:
        server.stop()


def _cancel_steps(self: ElasticMapReduceResponse) -> ActionResult:
    """EMR CancelSteps, missing from moto 5.2.5: RUNNING -> CANCEL_PENDING, PENDING -> CANCELLED."""
    cluster = self.backend.clusters[self._get_param("ClusterId")]
    wanted = set(self._get_param("StepIds", []))
    answers = []
    for step in cluster.steps:
        if step.id not in wanted:
            continue
        if step.state == "RUNNING":
            step.state = "CANCEL_PENDING"
        elif step.state == "PENDING":
            step.state = "CANCELLED"
        else:
            answers.append(
                {"StepId": step.id, "Status": "FAILED", "Reason": f"step is already {step.state}"}
            )
            continue
        answers.append({"StepId": step.id, "Status": "SUBMITTED", "Reason": ""})
    return ActionResult({"CancelStepsInfoList": answers})


@contextmanager
def cancel_steps_installed() -> Iterator[None]:
    """Add CancelSteps to moto's EMR API for as long as the context lasts."""
    assert not hasattr(ElasticMapReduceResponse, "cancel_steps"), (
        "moto implements cancel_steps now: drop this extension"
    )
    ElasticMapReduceResponse.cancel_steps = _cancel_steps  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del ElasticMapReduceResponse.cancel_steps  # type: ignore[attr-defined]


def emr_clusters() -> dict[str, Any]:
    """moto's live EMR clusters of every region it has created (the endpoint URL is an IP, so
    moto files EMR calls under its default region whatever region the client names)."""
    clusters: dict[str, Any] = {}
    account = emr_backends[ACCOUNT]
    for region in list(account.keys()):
        clusters.update(account[region].clusters)
    return clusters


def emr_cluster(cluster_id: str) -> Any:
    return emr_clusters()[cluster_id]


@contextmanager
def serverless_runs_start_submitted() -> Iterator[None]:
    """moto marks a new job run SUCCESS at once; start it SUBMITTED for the player instead."""
    original = EMRServerlessBackend.start_job_run

    def start_job_run(self: EMRServerlessBackend, **kwargs: Any) -> Any:
        run = original(self, **kwargs)
        run.state = "SUBMITTED"
        return run

    EMRServerlessBackend.start_job_run = start_job_run  # type: ignore[method-assign]
    try:
        yield
    finally:
        EMRServerlessBackend.start_job_run = original  # type: ignore[method-assign]


def serverless_job_runs() -> list[Any]:
    runs: list[Any] = []
    account = emrserverless_backends[ACCOUNT]
    for region in list(account.keys()):
        for application_runs in account[region].job_runs.values():
            runs += application_runs
    return runs


# --------------------------------------------------------------------------- cluster player


@dataclass
class StepPlan:
    """What the player does with the next step, instead of just running it."""

    # Fail at once without Spark, with these driver stderr lines (a spot loss, say).
    fail_with: list[str] | None = None
    # Run the driver, then terminate the whole cluster after this many seconds.
    terminate_cluster_after_s: float | None = None
    termination_reason: str = "Instance failure: the primary node was lost"


@dataclass
class PlayedStep:
    cluster_id: str
    step_id: str
    args: list[str]
    driver_env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    returncode: int | None = None
    state: str = "RUNNING"
    started_at: float = 0.0
    ended_at: float = 0.0  # wall clock when the step reached its end state
    driver_log: Path | None = None


class ClusterPlayer:
    """Plays every EMR cluster in moto: runs steps one at a time, as StepConcurrencyLevel 1."""

    def __init__(self, aws: AwsEmulator, work_dir: Path, *, master: str = "local[2]") -> None:
        self._aws = aws
        self._s3 = aws.client("s3")
        self._work_dir = work_dir
        self._master = master
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[str] = set()
        self._applications = 0
        self.plans: deque[StepPlan] = deque()
        self.played: list[PlayedStep] = []
        self.driver_started = threading.Event()
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="emr-cluster-player", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.errors:
            raise AssertionError(f"cluster player failed: {self.errors[0]!r}") from self.errors[0]

    def played_step(self, step_id: str) -> PlayedStep:
        return next(p for p in self.played if p.step_id == step_id)

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                found = self._next_step()
                if found is not None:
                    self._play(*found)
                    continue
                job_run = self._next_job_run()
                if job_run is not None:
                    self._play_job_run(job_run)
                    continue
                time.sleep(0.05)
            except BaseException as error:  # noqa: BLE001 - surfaced by stop()
                self.errors.append(error)
                return

    def _next_step(self) -> tuple[Any, Any] | None:
        for cluster in emr_clusters().values():
            if cluster.state in CLUSTER_ENDED:
                continue
            for step in cluster.steps:
                if step.id in self._seen:
                    continue
                if step.state in ("PENDING", "RUNNING"):
                    return cluster, step
                if step.state == "CANCEL_PENDING":  # cancelled before it started
                    self._seen.add(step.id)
                    step.state = "CANCELLED"
        return None

    def _next_job_run(self) -> Any | None:
        for run in serverless_job_runs():
            if run.id not in self._seen and run.state == "SUBMITTED":
                return run
        return None

    def _play_job_run(self, run: Any) -> None:
        """An EMR Serverless job run: same spark-submit, driverEnv confs, SPARK_DRIVER logs."""
        self._seen.add(run.id)
        submit = run.job_driver["sparkSubmit"]
        args = [
            "spark-submit",
            *shlex.split(submit.get("sparkSubmitParameters", "")),
            submit["entryPoint"],
            *submit.get("entryPointArguments", []),
        ]
        played = PlayedStep(run.application_id, run.id, args, started_at=time.time())
        self.played.append(played)
        plan = self.plans.popleft() if self.plans else StepPlan()
        run.state = "RUNNING"
        if plan.fail_with is not None:
            driver_lines = plan.fail_with
            state = "FAILED"
        else:
            _, driver_lines = self._drive(
                played,
                args,
                run.id,
                _SERVERLESS_DRIVER_ENV,
                lambda process: self._watch_job_run(run, process),
            )
            state = (
                "CANCELLED"
                if run.state == "CANCELLED"
                else "SUCCESS"
                if played.returncode == 0
                else "FAILED"
            )
        log_uri = (
            (run.configuration_overrides or {})
            .get("monitoringConfiguration", {})
            .get("s3MonitoringConfiguration", {})
            .get("logUri")
        )
        if log_uri:
            driver = S3Uri.parse(log_uri).join(
                "applications", run.application_id, "jobs", run.id, "SPARK_DRIVER"
            )
            self._put_gzip(driver.join("stderr.gz"), driver_lines)
            self._put_gzip(driver.join("stdout.gz"), [])
        run.state_details = "" if state == "SUCCESS" else f"Job run {state.lower()}"
        run.state = state
        played.state, played.ended_at = state, time.time()

    def _play(self, cluster: Any, step: Any) -> None:
        self._seen.add(step.id)
        step.state = "RUNNING"
        step.start()
        played = PlayedStep(cluster.id, step.id, list(step.args), started_at=time.time())
        self.played.append(played)
        plan = self.plans.popleft() if self.plans else StepPlan()
        self._applications += 1
        application = f"application_{int(time.time() * 1000)}_{self._applications:04d}"
        if plan.fail_with is not None:
            self._write_logs(cluster, step, application, plan.fail_with, succeeded=False)
            self._finish(cluster, step, played, "FAILED", "Step failed")
            return
        state, driver_lines = self._drive(
            played,
            list(step.args),
            step.id,
            _APP_MASTER_ENV,
            lambda process: self._watch(cluster, step, process, plan),
        )
        if state is None:
            state = "COMPLETED" if played.returncode == 0 else "FAILED"
        self._write_logs(cluster, step, application, driver_lines, succeeded=state == "COMPLETED")
        self._finish(
            cluster, step, played, state, "" if state == "COMPLETED" else f"Step {state.lower()}"
        )

    def _drive(
        self,
        played: PlayedStep,
        args: list[str],
        run_id: str,
        driver_env_prefix: str,
        watch: Callable[[subprocess.Popen[bytes]], str | None],
    ) -> tuple[str | None, list[str]]:
        """Run a step's or job run's spark-submit here under `watch`; its verdict and log."""
        workdir = self._work_dir / run_id
        workdir.mkdir(parents=True, exist_ok=True)
        played.command, played.driver_env = self._localize(args, workdir, driver_env_prefix)
        played.driver_log = driver_log = workdir / "driver.log"
        with driver_log.open("wb") as log:
            process = subprocess.Popen(
                played.command,
                env=played.driver_env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.driver_started.set()
            verdict = watch(process)
        played.returncode = process.returncode
        return verdict, driver_log.read_text(errors="replace").splitlines()

    def _watch_job_run(self, run: Any, process: subprocess.Popen[bytes]) -> None:
        """Wait for a job run's driver; stop it for a cancel or test shutdown."""
        while process.poll() is None:
            if run.state == "CANCELLED" or self._stop.is_set():
                stop_process_group(process)
                return
            time.sleep(0.1)

    def _watch(
        self, cluster: Any, step: Any, process: subprocess.Popen[bytes], plan: StepPlan
    ) -> str | None:
        """Wait for the driver; stop it for a cancel, a cluster termination or test shutdown."""
        started = time.monotonic()
        while process.poll() is None:
            if step.state == "CANCEL_PENDING":
                stop_process_group(process)
                return "CANCELLED"
            if (
                plan.terminate_cluster_after_s is not None
                and time.monotonic() - started >= plan.terminate_cluster_after_s
            ):
                cluster.terminate()
                cluster.state = "TERMINATED_WITH_ERRORS"
                cluster.last_state_change_reason = plan.termination_reason
            if cluster.state in CLUSTER_ENDED or self._stop.is_set():
                stop_process_group(process)
                return "INTERRUPTED"
            time.sleep(0.1)
        return None

    def _localize(
        self, args: list[str], workdir: Path, driver_env_prefix: str
    ) -> tuple[list[str], dict[str, str]]:
        """The spark-submit as this machine can run it, and the driver's environment (the
        confs named `<driver_env_prefix>NAME`, as YARN or EMR Serverless would set them)."""
        if not args or args[0] != "spark-submit":
            raise AssertionError(f"not a spark-submit step: {args[:3]}")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(workdir)),
            "LANG": "C.UTF-8",
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PYTHONUNBUFFERED": "1",
            "AWS_ENDPOINT_URL": self._aws.endpoint,  # the driver reaches "S3" through moto
            **{key: value for key, value in FAKE_AWS_ENV.items() if key != "AWS_DEFAULT_REGION"},
        }
        if os.environ.get("JAVA_HOME"):
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        name, confs, py_files = "emr-step", dict(DEFAULT_CONF), []
        position = 1
        while position < len(args) and args[position].startswith("--"):
            option = args[position]
            value = args[position + 1] if option in _OPTIONS_WITH_VALUE else ""
            position += 2 if option in _OPTIONS_WITH_VALUE else 1
            if option == "--conf":
                key, _, conf_value = value.partition("=")
                if key.startswith(driver_env_prefix):
                    env[key[len(driver_env_prefix) :]] = conf_value
                else:
                    confs[key] = conf_value
            elif option == "--py-files":
                py_files = [self._download(uri, workdir) for uri in value.split(",")]
            elif option == "--name":
                name = value
        entry, app_args = self._download(args[position], workdir), args[position + 1 :]
        confs = {**cluster_defaults(app_args), **confs}
        command = [
            str(spark_home() / "bin" / "spark-submit"),
            "--master",
            self._master,
            "--name",
            name,
            "--driver-java-options",
            DEFAULT_DRIVER_JAVA_OPTIONS,
            "--driver-class-path",
            jar_classpath(JARS_DIR),
        ]
        for key, value in sorted(confs.items()):
            command += ["--conf", f"{key}={value}"]
        if py_files:
            command += ["--py-files", ",".join(py_files)]
        return [*command, entry, *app_args], env

    def _download(self, uri: str, workdir: Path) -> str:
        location = S3Uri.parse(uri)
        target = workdir / Path(location.key).name
        self._s3.download_file(location.bucket, location.key, str(target))
        return str(target)

    def _write_logs(
        self, cluster: Any, step: Any, application: str, driver_lines: list[str], *, succeeded: bool
    ) -> None:
        """EMR's log layout: the spark-submit client's output per step, the driver per
        container (in cluster mode the job's own stderr is only in the latter)."""
        if not cluster.log_uri:
            return
        root = S3Uri.parse(cluster.log_uri).join(cluster.id)
        stamp = dt.datetime.now(dt.UTC).strftime("%y/%m/%d %H:%M:%S")
        final = "SUCCEEDED" if succeeded else "FAILED"
        client = [
            f"{stamp} INFO Client: Submitting application {application} to ResourceManager",
            f"{stamp} INFO YarnClientImpl: Submitted application {application}",
            f"{stamp} INFO Client: Application report for {application} (state: RUNNING)",
            f"{stamp} INFO Client: Application report for {application} (state: FINISHED)",
            f"\t final status: {final}",
        ]
        if not succeeded:
            client += [
                'Exception in thread "main" org.apache.spark.SparkException: Application '
                f"{application} finished with failed status",
                "\tat org.apache.spark.deploy.yarn.Client.run(Client.scala:1342)",
            ]
        container = f"container_{application[len('application_') :]}_01_000001"
        self._put_gzip(root.join("steps", step.id, "stderr.gz"), client)
        self._put_gzip(root.join("steps", step.id, "stdout.gz"), [])
        self._put_gzip(root.join("containers", application, container, "stderr.gz"), driver_lines)

    def _put_gzip(self, uri: S3Uri, lines: list[str]) -> None:
        body = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"))
        self._s3.put_object(Bucket=uri.bucket, Key=uri.key, Body=body)

    @staticmethod
    def _finish(cluster: Any, step: Any, played: PlayedStep, state: str, reason: str) -> None:
        step.end_date_time = dt.datetime.now(dt.UTC)
        step.last_state_change_reason = reason or None
        step.state = state
        played.state, played.ended_at = state, time.time()
        if cluster.state == "RUNNING" and not any(
            s.state in ("PENDING", "RUNNING") for s in cluster.steps
        ):
            cluster.state = "WAITING"
