"""Spark on Amazon EMR as steps: what users do by hand with `aws emr add-steps`, from Dagster.

Each job becomes one `spark-submit --deploy-mode cluster` step (command-runner.jar) on an
existing cluster, or on a transient cluster created for the job and terminated afterwards. The
content-hashed `spark_jobs` bundle is staged in S3 once per hash; Dagster Pipes context and
messages travel through S3; the driver's environment is set with
`spark.yarn.appMasterEnv.NAME=value`, the YARN way to give a cluster-mode driver its variables.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from clinical_platform.deployments import CLUSTER_ID_VAR, DEFAULT_REGION
from clinical_platform.launchers.aws import (
    SECRET_ID_SUFFIX,
    TRANSIENT_FAILURE_PATTERNS,
    AwsConfigError,
    PollPacer,
    S3Uri,
    StagedCode,
    aws_client,
    is_transient_failure,
    list_keys,
    pipes_channel,
    read_gzip_lines,
    secret_references,
    stage_code,
    stage_file,
    tail_block,
    wait_for_gzip_lines,
    wait_for_state,
    write_submission,
)
from clinical_platform.launchers.base import (
    Reported,
    SparkJob,
    SparkLauncher,
    SparkRun,
    job_failure_reason,
    last_error_line,
    reported_results,
)
from clinical_platform.launchers.bundle import build_bundle
from clinical_platform.launchers.emr_cluster import (
    BOOTSTRAP_FILE,
    EmrClusterSpec,
    bootstrap_uri_of,
    project_file,
    run_job_flow_request,
)
from spark_jobs.contracts.protocol import LOG_LOCATION_ENV, SUBMISSION_URI_ENV

STEP_DONE = frozenset({"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"})
CLUSTER_ENDED = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})
CLUSTER_CHECK_INTERVAL_S = 60.0
_APPLICATION_ID = re.compile(r"application_\d+_\d+")
_TAIL_LINES = 20

__all__ = ["SECRET_ID_SUFFIX", "EmrStepLauncher"]


class _LaunchError(Exception):
    """A one-line reason the step could not be run at all."""


@dataclass(frozen=True)
class _Cluster:
    cluster_id: str
    log_uri: S3Uri | None


@dataclass
class _Attempt:
    step_id: str
    state: str
    results: list[Reported]
    failure: str | None = None
    transient: str | None = None  # the transient-failure pattern that matched
    details: dict[str, Any] = field(default_factory=dict)


class _Aws:
    """The two clients one launch needs."""

    def __init__(self, region: str, endpoint_url: str | None) -> None:
        self.emr = aws_client("emr", region, endpoint_url)
        self.s3 = aws_client("s3", region, endpoint_url)


class EmrStepLauncher(SparkLauncher):
    """Runs each job as an EMR step and streams its results back through Pipes over S3.

    With `cluster_id` steps go to that long-running cluster (never terminated by us); without
    it each job gets a transient cluster from `transient_cluster` (the seed's spec by default),
    terminated when the job ends, also on failure or run termination.
    """

    staging_uri: str = Field(description="s3://bucket/prefix for code bundles and Pipes messages")
    cluster_id: str | None = Field(
        default=None,
        description="Existing cluster (j-...); unset starts a transient cluster per job",
    )
    transient_cluster: EmrClusterSpec = Field(default_factory=EmrClusterSpec)
    region: str = Field(default=DEFAULT_REGION)
    endpoint_url: str | None = Field(
        default=None, description="Only for emulators and private API endpoints"
    )
    execution_role_arn: str | None = Field(
        default=None,
        description="Per-step IAM role (ExecutionRoleArn); needs a runtime-role cluster",
    )
    secret_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Secret env var -> Secrets Manager secret id/ARN the driver reads it from",
    )
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra --conf settings")
    max_step_retries: int = Field(
        default=2, description="Resubmissions after a transient failure (spot loss, throttling)"
    )
    retry_delay_s: float = Field(default=30.0)
    transient_failure_patterns: list[str] = Field(
        default_factory=lambda: list(TRANSIENT_FAILURE_PATTERNS)
    )
    poll_interval_s: float = Field(default=2.0, description="First describe_step interval")
    max_poll_interval_s: float = Field(default=20.0, description="Backoff cap while running")
    finishing_poll_interval_s: float = Field(
        default=0.5, description="Interval once the job has closed its Pipes channel"
    )
    pipes_interval_s: int = Field(
        default=1, description="Seconds between Pipes chunk uploads (driver) and reads (Dagster)"
    )
    log_wait_s: float = Field(
        default=120.0, description="How long to wait for a failed step's logs to reach S3"
    )
    cancel_timeout_s: float = Field(default=300.0)

    @property
    def description(self) -> str:
        if self.cluster_id:
            return f"emr cluster {self.cluster_id}"
        return f"emr transient cluster ({self.transient_cluster.release_label})"

    # ------------------------------------------------------------------ launch

    def secret_environment(self, job: SparkJob) -> dict[str, str]:
        """Secrets Manager references only: the driver reads the values on the cluster."""
        return secret_references(job.secrets, self.secret_ids, f"EMR ({job.entry_point} step)")

    def launch(
        self,
        context: dg.AssetExecutionContext,
        job: SparkJob,
        extras: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> SparkRun:
        try:
            staging = S3Uri.parse(self.staging_uri)
        except AwsConfigError as error:
            return SparkRun(results=[], failure=str(error))
        driver_env = dict(env)
        driver_env["AWS_DEFAULT_REGION"] = self.region
        aws = _Aws(self.region, self.endpoint_url)
        try:
            bundle = build_bundle()
            code = stage_code(aws.s3, staging, bundle, job.entry_point)
            context.log.info(
                f"Code bundle {bundle.version} {'uploaded to' if code.uploaded else 'already in'}"
                f" {code.archive}"
            )
            with self._cluster(context, aws, staging, job) as cluster:
                # Each attempt's step logs land under the cluster's steps/ folder.
                if cluster.log_uri is not None:
                    steps = cluster.log_uri.join(cluster.cluster_id, "steps")
                    driver_env[LOG_LOCATION_ENV] = f"{steps}/"
                attempt = self._run_with_retries(
                    context, aws, staging, cluster, job, code, extras, driver_env
                )
        except _LaunchError as error:
            return SparkRun(results=[], failure=str(error))
        except (ClientError, BotoCoreError) as error:
            return SparkRun(
                results=[],
                failure=f"{job.entry_point} on EMR: AWS call failed: {_one_line(str(error))}",
            )
        details = {
            "emr_cluster_id": cluster.cluster_id,
            "emr_step_id": attempt.step_id,
            "code_bundle_uri": dg.MetadataValue.path(str(code.archive)),
            "code_bundle_uploaded": code.uploaded,
            **attempt.details,
        }
        if cluster.log_uri is not None:
            details["emr_step_logs"] = dg.MetadataValue.path(
                str(cluster.log_uri.join(cluster.cluster_id, "steps", attempt.step_id))
            )
        return SparkRun(results=attempt.results, failure=attempt.failure, details=details)

    def _run_with_retries(
        self,
        context: dg.AssetExecutionContext,
        aws: _Aws,
        staging: S3Uri,
        cluster: _Cluster,
        job: SparkJob,
        code: StagedCode,
        extras: Mapping[str, Any],
        driver_env: Mapping[str, str],
    ) -> _Attempt:
        number = 1
        while True:
            attempt = self._attempt(
                context, aws, staging, cluster, job, code, extras, driver_env, number
            )
            attempt.details["emr_attempts"] = number
            if attempt.failure is None or attempt.transient is None:
                return attempt
            if number > self.max_step_retries:
                summary, newline, tails = attempt.failure.partition("\n")
                attempt.failure = (
                    f"{summary} (gave up after {number} attempts; the failure "
                    f"looked transient: {attempt.transient!r}){newline}{tails}"
                )
                return attempt
            context.log.warning(
                f"EMR step {attempt.step_id} of {job.entry_point} failed transiently "
                f"({attempt.transient!r}); resubmitting, retry {number} of "
                f"{self.max_step_retries}"
            )
            time.sleep(self.retry_delay_s)
            number += 1

    # ------------------------------------------------------------------ cluster

    @contextmanager
    def _cluster(
        self, context: dg.AssetExecutionContext, aws: _Aws, staging: S3Uri, job: SparkJob
    ) -> Iterator[_Cluster]:
        if self.cluster_id:
            described = aws.emr.describe_cluster(ClusterId=self.cluster_id)["Cluster"]
            state = described["Status"]["State"]
            if state in CLUSTER_ENDED:
                raise _LaunchError(
                    f"EMR cluster {self.cluster_id} is {state} "
                    f"({_state_reason(described['Status'])}); point "
                    f"{CLUSTER_ID_VAR} at a running cluster"
                )
            yield _Cluster(self.cluster_id, _log_uri(described.get("LogUri")))
            return
        spec = self.transient_cluster
        default_bootstrap = project_file(BOOTSTRAP_FILE)
        if spec.bootstrap_uri is None and default_bootstrap.exists():
            stage_file(aws.s3, default_bootstrap, S3Uri.parse(bootstrap_uri_of(spec, staging)))
        try:
            request = run_job_flow_request(
                spec,
                staging,
                extra_tags={
                    "dagster/run_id": context.run.run_id,
                    "clinical-platform/job": job.entry_point,
                },
            )
        except AwsConfigError as error:
            raise _LaunchError(str(error)) from None
        cluster_id = aws.emr.run_job_flow(**request)["JobFlowId"]
        context.log.info(
            f"Started transient EMR cluster {cluster_id} ({spec.release_label}, "
            f"{spec.instance_count} x {spec.instance_type}) for {job.entry_point}"
        )
        try:
            yield _Cluster(cluster_id, _log_uri(request["LogUri"]))
        finally:
            try:
                aws.emr.terminate_job_flows(JobFlowIds=[cluster_id])
                context.log.info(f"Terminating transient EMR cluster {cluster_id}")
            except (ClientError, BotoCoreError) as error:
                context.log.error(
                    f"Could not terminate transient EMR cluster {cluster_id}; "
                    f"terminate it by hand: {_one_line(str(error))}"
                )

    # ------------------------------------------------------------------ one step

    def step_request(
        self, job: SparkJob, code: StagedCode, driver_env: Mapping[str, str], name: str
    ) -> dict[str, Any]:
        """The `add_job_flow_steps` step: the seed's spark-submit, in cluster mode."""
        # One YARN attempt: a second driver would restart the Pipes message sequence; retries
        # are the launcher's, each with a fresh Pipes channel.
        conf = {"spark.yarn.maxAppAttempts": "1", **self.spark_conf}
        conf.update({f"spark.yarn.appMasterEnv.{key}": value for key, value in driver_env.items()})
        args = ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn", "--name", name]
        for key, value in sorted(conf.items()):
            args += ["--conf", f"{key}={value}"]
        args += ["--py-files", str(code.archive), str(code.entry_script), *job.arguments]
        return {
            "Name": name,
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
        }

    def _attempt(
        self,
        context: dg.AssetExecutionContext,
        aws: _Aws,
        staging: S3Uri,
        cluster: _Cluster,
        job: SparkJob,
        code: StagedCode,
        extras: Mapping[str, Any],
        driver_env: Mapping[str, str],
        number: int,
    ) -> _Attempt:
        injector, reader = pipes_channel(
            aws.s3,
            staging,
            context.run.run_id,
            read_interval_s=self.pipes_interval_s,
            upload_interval_s=self.pipes_interval_s,
        )
        name = f"clinical-{job.entry_point}-{context.run.run_id[:8]}"
        submission = staging.join("submissions", context.run.run_id, f"{name}-{number}.json")
        with dg.open_pipes_session(
            context=context, context_injector=injector, message_reader=reader, extras=dict(extras)
        ) as session:
            env = {
                **driver_env,
                **session.get_bootstrap_env_vars(),
                SUBMISSION_URI_ENV: str(submission),
            }
            submit: dict[str, Any] = {
                "JobFlowId": cluster.cluster_id,
                "Steps": [self.step_request(job, code, env, name)],
            }
            if self.execution_role_arn:
                submit["ExecutionRoleArn"] = self.execution_role_arn
            step_id = aws.emr.add_job_flow_steps(**submit)["StepIds"][0]
            context.log.info(
                f"Submitted {job.entry_point} as EMR step {step_id} on cluster "
                f"{cluster.cluster_id} (attempt {number})"
            )
            facts = {"emr_cluster_id": cluster.cluster_id, "emr_step_id": step_id}
            if cluster.log_uri is not None:
                steps = cluster.log_uri.join(cluster.cluster_id, "steps", step_id)
                facts["log_location"] = f"{steps}/"
            unwritten = write_submission(aws.s3, submission, facts)
            if unwritten:
                context.log.warning(f"EMR step {step_id}: its lineage will lack it: {unwritten}")
            try:
                step = self._wait(
                    context,
                    aws.emr,
                    cluster.cluster_id,
                    step_id,
                    lambda: session.message_handler.received_closed_message,
                )
            except (
                dg.DagsterExecutionInterruptedError,
                KeyboardInterrupt,
                ClientError,
                BotoCoreError,
            ):
                # Terminated, or we lost track of it: never leave the step running unwatched.
                self._cancel(context, aws.emr, cluster.cluster_id, step_id)
                raise
        attempt = _Attempt(step_id, step["Status"]["State"], reported_results(session))
        if attempt.state != "COMPLETED":
            self._explain(context, aws, cluster, step, job, attempt)
        return attempt

    def _wait(
        self,
        context: dg.AssetExecutionContext,
        emr: Any,
        cluster_id: str,
        step_id: str,
        finishing: Callable[[], bool],
    ) -> dict[str, Any]:
        """Poll describe_step with backoff; poll fast once the job said it is done."""
        state = "SUBMITTED"
        pacer = PollPacer(
            self.poll_interval_s,
            self.max_poll_interval_s,
            self.finishing_poll_interval_s,
            finishing,
        )
        next_cluster_check = time.monotonic() + CLUSTER_CHECK_INTERVAL_S
        while True:
            step = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
            current = step["Status"]["State"]
            if current != state:
                context.log.info(f"EMR step {step_id} on {cluster_id}: {state} -> {current}")
                state = current
                pacer.restart()
            if current in STEP_DONE:
                return step
            if time.monotonic() >= next_cluster_check:
                # EMR ends a dead cluster's steps too; this only guards against waiting forever.
                cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
                if cluster["Status"]["State"] in CLUSTER_ENDED:
                    return step
                next_cluster_check = time.monotonic() + CLUSTER_CHECK_INTERVAL_S
            pacer.sleep()

    def _cancel(
        self, context: dg.AssetExecutionContext, emr: Any, cluster_id: str, step_id: str
    ) -> None:
        """Run terminated: cancel the step and wait until EMR confirms it stopped."""
        context.log.warning(f"Run terminated: cancelling EMR step {step_id} on {cluster_id}")
        try:
            answer = emr.cancel_steps(
                ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="SEND_INTERRUPT"
            )
            for info in answer.get("CancelStepsInfoList", []):
                if info.get("Status") == "FAILED":
                    context.log.warning(
                        f"EMR refused to cancel step {step_id}: {info.get('Reason')}"
                    )
            state = wait_for_state(
                lambda: emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"][
                    "State"
                ],
                STEP_DONE,
                self.cancel_timeout_s,
            )
            if state is not None:
                context.log.warning(f"EMR step {step_id} is {state}")
            else:
                context.log.error(
                    f"EMR step {step_id} still not stopped "
                    f"{self.cancel_timeout_s:.0f} s after cancel_steps; check "
                    f"cluster {cluster_id}"
                )
        except (ClientError, BotoCoreError) as error:
            context.log.error(
                f"Could not cancel EMR step {step_id} on {cluster_id}: {_one_line(str(error))}"
            )

    # ------------------------------------------------------------------ failures

    def _explain(
        self,
        context: dg.AssetExecutionContext,
        aws: _Aws,
        cluster: _Cluster,
        step: dict[str, Any],
        job: SparkJob,
        attempt: _Attempt,
    ) -> None:
        """Fill the attempt's failure: cluster gone, or the step's own reason and log tails."""
        step_id, status = attempt.step_id, step["Status"]
        described = aws.emr.describe_cluster(ClusterId=cluster.cluster_id)["Cluster"]
        cluster_state = described["Status"]["State"]
        if cluster_state in CLUSTER_ENDED:
            attempt.failure = (
                f"EMR cluster {cluster.cluster_id} is {cluster_state} "
                f"({_state_reason(described['Status'])}); step {step_id} of "
                f"{job.entry_point} was {attempt.state}"
            )
            return
        if attempt.state != "FAILED":
            attempt.failure = (
                f"EMR step {step_id} of {job.entry_point} was {attempt.state} "
                f"outside Dagster ({_state_reason(status)})"
            )
            return
        failure_details = status.get("FailureDetails") or {}
        step_lines, driver_lines, sources = self._failure_logs(context, aws.s3, cluster, step_id)
        reason = (
            job_failure_reason(driver_lines)
            or job_failure_reason(step_lines)
            or failure_details.get("Message")
            or f"{job.entry_point} failed: {last_error_line(driver_lines or step_lines)}"
        )
        blocks = [
            tail_block(
                source, lines, _TAIL_LINES if source.endswith("container") else _TAIL_LINES // 2
            )
            for source, lines in sources
            if lines
        ]
        summary = f"{_one_line(reason)} (EMR cluster {cluster.cluster_id} step {step_id} FAILED)"
        attempt.failure = "\n\n".join([summary, *blocks])
        attempt.transient = is_transient_failure(
            [
                str(failure_details.get("Reason", "")),
                str(failure_details.get("Message", "")),
                *step_lines[-50:],
                *driver_lines[-50:],
            ],
            self.transient_failure_patterns,
        )
        attempt.details["emr_stderr_tail"] = dg.MetadataValue.md(
            "```\n" + "\n\n".join(blocks) + "\n```"
        )

    def _failure_logs(
        self, context: dg.AssetExecutionContext, s3: Any, cluster: _Cluster, step_id: str
    ) -> tuple[list[str], list[str], list[tuple[str, list[str]]]]:
        """The step's stderr.gz and, in cluster mode, the driver container's stderr.gz."""
        if cluster.log_uri is None:
            context.log.warning(
                f"EMR cluster {cluster.cluster_id} has no log URI: cannot show "
                f"the stderr of step {step_id}"
            )
            return [], [], []
        root = cluster.log_uri.join(cluster.cluster_id)
        step_uri = root.join("steps", step_id, "stderr.gz")
        deadline = time.monotonic() + self.log_wait_s
        step_lines = wait_for_gzip_lines(s3, step_uri, deadline) or []
        if not step_lines:
            context.log.warning(
                f"{step_uri} did not appear within {self.log_wait_s:.0f} s; look there later"
            )
        sources = [(f"{step_uri} (spark-submit)", step_lines)]
        driver_lines: list[str] = []
        applications = _APPLICATION_ID.findall("\n".join(step_lines))
        if applications:
            application = applications[-1]
            driver_uri = self._driver_log_uri(s3, root, application, deadline)
            if driver_uri is not None:
                driver_lines = read_gzip_lines(s3, driver_uri) or []
                sources.append((f"{driver_uri} (driver container)", driver_lines))
        return step_lines, driver_lines, sources

    @staticmethod
    def _driver_log_uri(s3: Any, root: S3Uri, application: str, deadline: float) -> S3Uri | None:
        """The application master's (driver's) stderr: its container id ends in _000001."""
        prefix = root.join("containers", application)
        while True:
            keys = [
                key
                for key in list_keys(s3, prefix)
                if key.endswith("/stderr.gz") and "_000001/" in key
            ]
            if keys:
                return S3Uri(root.bucket, keys[-1])  # the last attempt sorts last
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def _log_uri(value: str | None) -> S3Uri | None:
    return S3Uri.parse(value) if value else None


def _state_reason(status: Mapping[str, Any]) -> str:
    reason = status.get("StateChangeReason") or {}
    code, message = reason.get("Code"), reason.get("Message")
    text = ": ".join(str(part) for part in (code, message) if part)
    return text or "no reason given"


def _one_line(text: str) -> str:
    return " ".join(text.split())
