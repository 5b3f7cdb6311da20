"""Worker versions: a run always finishes on the code that started it.

Workers use Temporal's Worker Versioning. Each worker belongs to the deployment named after its
task queue, at a version (a build id) that is a digest of the code a run executes (:data:`CODE`:
the project's ``graphs``, ``nodes`` and ``state`` sources, its graph class, the collector
thresholds it holds and node placement, its LLM stack, embedded model, Temporal code, payload
store and saved batch tasks) and of the versions of the libraries that run inside workflows
(:data:`LIBRARIES`). Every workflow is *pinned* to the version that started it, so a worker of
other code never takes an in-flight run's tasks, its activities included; new runs go to the
deployment's *current* version.

A starting worker makes its version current when that version has never been current
(a new release), and only then: a restarted worker of an older release does not take the new
runs back. Operators who roll out by hand start workers with ``promote=False`` and use
``temporal worker deployment set-current-version``.

temporalio 1.35's Python client has no high-level call for worker deployments (its ``client``
module has none; Temporal's docs set the current version with the CLI), so the promotion calls
the Workflow Service's RPCs that the CLI command makes (``DescribeWorkerDeployment``,
``SetWorkerDeploymentCurrentVersion``) through the SDK's typed ``client.workflow_service``.
Workers are configured with the SDK's own ``WorkerDeploymentConfig``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.deployment.v1 import WorkerDeploymentVersion as VersionMessage
from temporalio.api.enums.v1 import EventType, TaskQueueType, WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

CODE = (
    "graphs",
    "nodes",
    "state",
    "langgraph_fanout.checked_graph",
    "langgraph_fanout.garbage_collection",
    "langgraph_fanout.placement",
    "langgraph_fanout.llm",
    "langgraph_fanout.engine",
    "langgraph_fanout.temporal",
    "langgraph_fanout.persistence.payload_store",
    "langgraph_fanout.persistence.task_results",
)
"""The project's packages and modules whose code a run executes."""
LIBRARIES = ("langgraph", "langchain-core", "temporalio", "temporalio-langgraph", "pydantic")
"""The libraries whose code runs inside workflows (their versions are part of a build id)."""
REGISTRATION_TIMEOUT = 30.0
"""Seconds a new version may take to show up at the server once its worker polls."""
PROMOTE_ATTEMPTS = 10
UNVERSIONED_CHECKED = 100
"""Open unversioned runs looked at before a first promotion."""
INACTIVE = WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE
"""A version that polls and has never been current."""


def build_id() -> str:
    """This code's version: the same on every machine with the same code and libraries."""
    digest = hashlib.sha256()
    for name in CODE:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin
        if spec.submodule_search_locations:  # a package: all its modules
            root = Path(next(iter(spec.submodule_search_locations)))
            paths = sorted(root.rglob("*.py"))
        else:
            root, paths = Path(spec.origin).parent, [Path(spec.origin)]
        for path in paths:
            digest.update(f"{name}/{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={importlib.metadata.version(library)}\0".encode())
    return digest.hexdigest()[:12]


def deployment_config(task_queue: str, build: str) -> WorkerDeploymentConfig:
    """Worker Versioning for a worker of ``build`` on ``task_queue``: runs pinned to it."""
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=task_queue, build_id=build),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


@dataclass(frozen=True)
class Promotion:
    """What a starting worker did about its version: ``current`` says whether it is now."""

    current: bool
    note: str


async def promote_if_new(client: Client, task_queue: str, build: str) -> Promotion:
    """Make ``build`` the current version of ``task_queue``'s workers if it never was.

    Waits until the server lists the version's workflow and activity queues (a worker of it
    polls). Leaves the current version alone while runs started by unversioned workers (an
    earlier release of this project) are open: they would move to this version and meet code
    they did not start with.
    """
    await _registered(client, task_queue, build)
    for _ in range(PROMOTE_ATTEMPTS):
        deployment = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=task_queue),
            retry=True,
        )
        info = deployment.worker_deployment_info
        current = info.routing_config.current_deployment_version.build_id
        summary = next(s for s in info.version_summaries if s.deployment_version.build_id == build)
        if current == build:
            return Promotion(True, "current")
        if summary.HasField("first_activation_time") or summary.status != INACTIVE:
            return Promotion(False, f"an earlier version; new runs go to version {current}")
        if not current and (unversioned := await _unversioned_runs(client, task_queue)):
            return Promotion(
                False,
                f"not made current: {unversioned} run(s) started by unversioned workers are "
                "still open on this task queue; let them finish, then run `temporal worker "
                f"deployment set-current-version --deployment-name {task_queue} --build-id "
                f"{build}`",
            )
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=task_queue,
                    build_id=build,
                    conflict_token=deployment.conflict_token,
                    identity=client.identity,
                ),
                retry=True,
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.FAILED_PRECONDITION:  # another worker changed it
                raise
            continue
        return Promotion(True, "made current: new runs start on it")
    return Promotion(False, "not made current: the deployment kept changing")


async def _registered(client: Client, task_queue: str, build: str) -> None:
    needed = {TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}
    request = DescribeWorkerDeploymentVersionRequest(
        namespace=client.namespace,
        deployment_version=VersionMessage(deployment_name=task_queue, build_id=build),
    )
    async with asyncio.timeout(REGISTRATION_TIMEOUT):
        while True:
            try:
                described = await client.workflow_service.describe_worker_deployment_version(
                    request, retry=True
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
            else:
                queues = described.worker_deployment_version_info.task_queue_infos
                if needed <= {q.type for q in queues if q.name == task_queue}:
                    return
            await asyncio.sleep(0.1)


async def _unversioned_runs(client: Client, task_queue: str) -> int:
    """Open runs on ``task_queue`` that an unversioned worker has begun to run.

    A run started while no version was current is unversioned too; it has run no code yet,
    so it may go to this version.
    """
    query = (
        f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running' "
        "AND TemporalWorkerDeploymentVersion IS NULL"
    )
    begun = 0
    async for run in client.list_workflows(query, limit=UNVERSIONED_CHECKED):
        handle = client.get_workflow_handle(run.id, run_id=run.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                begun += 1
                break
    return begun
