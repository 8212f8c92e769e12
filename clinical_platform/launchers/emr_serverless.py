"""Spark on an EMR Serverless application: one `start_job_run` per job, no cluster to run.

Same bundle and Pipes channel as `EmrStepLauncher`; the driver's variables travel as
`spark.emr-serverless.driverEnv.NAME=value`, the Serverless counterpart of YARN's appMasterEnv.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from clinical_platform.deployments import DEFAULT_REGION
from clinical_platform.launchers.aws import (
    AwsConfigError,
    PollPacer,
    S3Uri,
    StagedCode,
    aws_client,
    pipes_channel,
    secret_references,
    stage_code,
    tail_block,
    wait_for_gzip_lines,
    wait_for_state,
    write_submission,
)
from clinical_platform.launchers.base import (
    SparkJob,
    SparkLauncher,
    SparkRun,
    job_failure_reason,
    last_error_line,
    reported_results,
)
from clinical_platform.launchers.bundle import build_bundle
from spark_jobs.contracts.protocol import LOG_LOCATION_ENV, SUBMISSION_URI_ENV

JOB_DONE = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
_DRIVER_ENV = "spark.emr-serverless.driverEnv."
_TAIL_LINES = 20


class EmrServerlessLauncher(SparkLauncher):
    """Runs each job as an EMR Serverless job run and streams results back through S3 Pipes.

    The application must run a Python >= 3.11 with dagster-pipes and boto3 (a custom image or
    a `spark.archives` virtualenv, set in `spark_conf`); see docs/emr.md.
    """

    application_id: str = Field(description="EMR Serverless Spark application (00f...)")
    execution_role_arn: str = Field(description="Job runtime role")
    staging_uri: str = Field(description="s3://bucket/prefix for code bundles and Pipes messages")
    log_uri: str | None = Field(
        default=None,
        description="S3 monitoring logUri; default s3://<staging bucket>/emr-serverless-logs/",
    )
    region: str = Field(default=DEFAULT_REGION)
    endpoint_url: str | None = Field(
        default=None, description="Only for emulators and private API endpoints"
    )
    secret_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Secret env var -> Secrets Manager secret id/ARN the driver reads it from",
    )
    spark_conf: dict[str, str] = Field(default_factory=dict)
    poll_interval_s: float = Field(default=2.0)
    max_poll_interval_s: float = Field(default=20.0)
    finishing_poll_interval_s: float = Field(default=0.5)
    pipes_interval_s: int = Field(default=1)
    log_wait_s: float = Field(default=120.0)
    cancel_timeout_s: float = Field(default=300.0)

    @property
    def description(self) -> str:
        # No spaces: it travels inside sparkSubmitParameters, one string split on whitespace.
        return f"emr-serverless:{self.application_id}"

    def _log_root(self) -> S3Uri:
        if self.log_uri:
            return S3Uri.parse(self.log_uri)
        return S3Uri(S3Uri.parse(self.staging_uri).bucket, "emr-serverless-logs")

    def job_driver(
        self, job: SparkJob, code: StagedCode, driver_env: Mapping[str, str]
    ) -> dict[str, Any]:
        """The `jobDriver` of start_job_run; sparkSubmitParameters is split on whitespace."""
        conf = {
            **self.spark_conf,
            **{f"{_DRIVER_ENV}{key}": value for key, value in driver_env.items()},
        }
        spaced = sorted(
            key for key, value in conf.items() if not value or any(c.isspace() for c in value)
        )
        if spaced:
            raise AwsConfigError(
                f"{spaced[0]}: EMR Serverless cannot pass an empty value or "
                "one with spaces in sparkSubmitParameters"
            )
        parameters = ["--py-files", str(code.archive)]
        for key, value in sorted(conf.items()):
            parameters += ["--conf", f"{key}={value}"]
        return {
            "sparkSubmit": {
                "entryPoint": str(code.entry_script),
                "entryPointArguments": list(job.arguments),
                "sparkSubmitParameters": " ".join(parameters),
            }
        }

    def secret_environment(self, job: SparkJob) -> dict[str, str]:
        """Secrets Manager references only: the driver reads the values on the cluster."""
        return secret_references(
            job.secrets, self.secret_ids, f"EMR Serverless ({job.entry_point} job)"
        )

    def launch(
        self,
        context: dg.AssetExecutionContext,
        job: SparkJob,
        extras: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> SparkRun:
        try:
            staging = S3Uri.parse(self.staging_uri)
            log_root = self._log_root()
        except AwsConfigError as error:
            return SparkRun(results=[], failure=str(error))
        driver_env = dict(env)
        driver_env["AWS_DEFAULT_REGION"] = self.region
        driver_env[LOG_LOCATION_ENV] = f"{log_root}/"
        s3 = aws_client("s3", self.region, self.endpoint_url)
        serverless = aws_client("emr-serverless", self.region, self.endpoint_url)
        try:
            code = stage_code(s3, staging, build_bundle(), job.entry_point)
            injector, reader = pipes_channel(
                s3,
                staging,
                context.run.run_id,
                read_interval_s=self.pipes_interval_s,
                upload_interval_s=self.pipes_interval_s,
            )
            with dg.open_pipes_session(
                context=context,
                context_injector=injector,
                message_reader=reader,
                extras=dict(extras),
            ) as session:
                submission = staging.join(
                    "submissions", context.run.run_id, f"{job.entry_point}.json"
                )
                driver = self.job_driver(
                    job,
                    code,
                    {
                        **driver_env,
                        **session.get_bootstrap_env_vars(),
                        SUBMISSION_URI_ENV: str(submission),
                    },
                )
                run_id = serverless.start_job_run(
                    applicationId=self.application_id,
                    clientToken=uuid.uuid4().hex,
                    executionRoleArn=self.execution_role_arn,
                    name=f"clinical-{job.entry_point}-{context.run.run_id[:8]}",
                    jobDriver=driver,
                    configurationOverrides={
                        "monitoringConfiguration": {
                            "s3MonitoringConfiguration": {"logUri": f"{log_root}/"}
                        }
                    },
                    tags={"dagster/run_id": context.run.run_id},
                )["jobRunId"]
                context.log.info(
                    f"Started {job.entry_point} as EMR Serverless job run {run_id} "
                    f"on application {self.application_id}"
                )
                # The run's own logs, as EMR Serverless lays them out under the log URI.
                logs = f"{log_root}/applications/{self.application_id}/jobs/{run_id}/"
                facts = {
                    "emr_serverless_application_id": self.application_id,
                    "emr_serverless_job_run_id": run_id,
                    "log_location": logs,
                }
                unwritten = write_submission(s3, submission, facts)
                if unwritten:
                    context.log.warning(f"Job run {run_id}: its lineage will lack it: {unwritten}")
                try:
                    final = self._wait(
                        context,
                        serverless,
                        run_id,
                        lambda: session.message_handler.received_closed_message,
                    )
                except (
                    dg.DagsterExecutionInterruptedError,
                    KeyboardInterrupt,
                    ClientError,
                    BotoCoreError,
                ):
                    # Terminated, or we lost track of it: never leave the job run unwatched.
                    self._cancel(context, serverless, run_id)
                    raise
            results = reported_results(session)
        except AwsConfigError as error:
            return SparkRun(results=[], failure=str(error))
        except (ClientError, BotoCoreError) as error:
            return SparkRun(
                results=[],
                failure=f"{job.entry_point} on EMR Serverless: AWS call "
                f"failed: {' '.join(str(error).split())}",
            )
        details: dict[str, Any] = {
            "emr_serverless_application_id": self.application_id,
            "emr_serverless_job_run_id": run_id,
            "code_bundle_uri": dg.MetadataValue.path(str(code.archive)),
            "code_bundle_uploaded": code.uploaded,
            "emr_serverless_logs": dg.MetadataValue.path(
                str(log_root.join("applications", self.application_id, "jobs", run_id))
            ),
        }
        failure = None
        if final["state"] != "SUCCESS":
            failure = self._explain(context, s3, log_root, final, job, details)
        return SparkRun(results=results, failure=failure, details=details)

    def _wait(
        self,
        context: dg.AssetExecutionContext,
        serverless: Any,
        run_id: str,
        finishing: Callable[[], bool],
    ) -> dict[str, Any]:
        """get_job_run with backoff, fast once the job has closed its Pipes channel."""
        state = "SUBMITTED"
        pacer = PollPacer(
            self.poll_interval_s,
            self.max_poll_interval_s,
            self.finishing_poll_interval_s,
            finishing,
        )
        while True:
            run = serverless.get_job_run(applicationId=self.application_id, jobRunId=run_id)[
                "jobRun"
            ]
            if run["state"] != state:
                context.log.info(f"EMR Serverless job run {run_id}: {state} -> {run['state']}")
                state = run["state"]
                pacer.restart()
            if state in JOB_DONE:
                return run
            pacer.sleep()

    def _cancel(self, context: dg.AssetExecutionContext, serverless: Any, run_id: str) -> None:
        context.log.warning(f"Run terminated: cancelling EMR Serverless job run {run_id}")
        try:
            serverless.cancel_job_run(applicationId=self.application_id, jobRunId=run_id)
            state = wait_for_state(
                lambda: serverless.get_job_run(applicationId=self.application_id, jobRunId=run_id)[
                    "jobRun"
                ]["state"],
                JOB_DONE,
                self.cancel_timeout_s,
            )
            if state is not None:
                context.log.warning(f"EMR Serverless job run {run_id} is {state}")
            else:
                context.log.error(
                    f"EMR Serverless job run {run_id} still running "
                    f"{self.cancel_timeout_s:.0f} s after cancel_job_run"
                )
        except (ClientError, BotoCoreError) as error:
            context.log.error(
                f"Could not cancel EMR Serverless job run {run_id}: {' '.join(str(error).split())}"
            )

    def _explain(
        self,
        context: dg.AssetExecutionContext,
        s3: Any,
        log_root: S3Uri,
        run: Mapping[str, Any],
        job: SparkJob,
        details: dict[str, Any],
    ) -> str:
        run_id, state = run["jobRunId"], run["state"]
        where = f"EMR Serverless job run {run_id} {state}"
        if state == "CANCELLED":
            return f"{where} outside Dagster ({run.get('stateDetails') or 'no reason given'})"
        stderr = log_root.join(
            "applications", self.application_id, "jobs", run_id, "SPARK_DRIVER", "stderr.gz"
        )
        lines = wait_for_gzip_lines(s3, stderr, time.monotonic() + self.log_wait_s) or []
        if not lines:
            context.log.warning(f"{stderr} did not appear within {self.log_wait_s:.0f} s")
        reason = (
            job_failure_reason(lines)
            or run.get("stateDetails")
            or f"{job.entry_point} failed: {last_error_line(lines)}"
        )
        block = tail_block(f"{stderr} (driver)", lines, _TAIL_LINES) if lines else ""
        details["emr_stderr_tail"] = dg.MetadataValue.md(f"```\n{block}\n```")
        summary = f"{' '.join(str(reason).split())} ({where})"
        return f"{summary}\n\n{block}" if block else summary
