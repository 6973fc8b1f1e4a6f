"""A small CRI client (runtime.v1 RuntimeService + ImageService) over containerd's unix
socket, on grpcio with the stubs gen.py makes. Test and tooling code only: pyrunc never
imports it. Every call has a bounded deadline; a failed call raises grpc.RpcError."""

from __future__ import annotations

from typing import Any

import grpc

from conformance.cri import gen

gen.ensure()

from conformance.cri._gen import cri_pb2 as pb  # noqa: E402
from conformance.cri._gen import cri_pb2_grpc as pb_grpc  # noqa: E402

__all__ = ["CRIClient", "pb"]


class CRIClient:
    """kubelet's side of the CRI, the calls the tests and the benchmark make."""

    def __init__(self, socket_path: str, timeout: float = 60) -> None:
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)
        self.img = pb_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _t(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    # --- runtime ---------------------------------------------------------------------------

    def version(self, timeout: float | None = 5) -> Any:
        return self.rt.Version(pb.VersionRequest(version="v1"), timeout=self._t(timeout))

    def status(self) -> Any:
        return self.rt.Status(pb.StatusRequest(), timeout=self._t(None))

    def run_pod(self, config: Any, handler: str, timeout: float | None = None) -> str:
        r = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config, runtime_handler=handler),
                                  timeout=self._t(timeout))
        return r.pod_sandbox_id

    def stop_pod(self, pod_id: str, timeout: float | None = None) -> None:
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id),
                               timeout=self._t(timeout))

    def remove_pod(self, pod_id: str, timeout: float | None = None) -> None:
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                                 timeout=self._t(timeout))

    def pod_status(self, pod_id: str, verbose: bool = False) -> Any:
        return self.rt.PodSandboxStatus(
            pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose),
            timeout=self._t(None))

    def list_pods(self, **filter_: Any) -> list[Any]:
        req = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**filter_))
        return list(self.rt.ListPodSandbox(req, timeout=self._t(None)).items)

    def create(self, pod_id: str, config: Any, pod_config: Any,
               timeout: float | None = None) -> str:
        r = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config),
            timeout=self._t(timeout))
        return r.container_id

    def start(self, cid: str, timeout: float | None = None) -> None:
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid),
                               timeout=self._t(timeout))

    def stop(self, cid: str, grace: int = 0, timeout: float | None = None) -> None:
        self.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=grace),
                              timeout=self._t(timeout) + grace)

    def remove(self, cid: str, timeout: float | None = None) -> None:
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid),
                                timeout=self._t(timeout))

    def list_containers(self, **filter_: Any) -> list[Any]:
        req = pb.ListContainersRequest(filter=pb.ContainerFilter(**filter_))
        return list(self.rt.ListContainers(req, timeout=self._t(None)).containers)

    def container_status(self, cid: str, verbose: bool = False) -> Any:
        return self.rt.ContainerStatus(
            pb.ContainerStatusRequest(container_id=cid, verbose=verbose),
            timeout=self._t(None))

    def update(self, cid: str, resources: Any) -> None:
        self.rt.UpdateContainerResources(
            pb.UpdateContainerResourcesRequest(container_id=cid, linux=resources),
            timeout=self._t(None))

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 30) -> Any:
        """ExecSync with the CRI's own timeout (seconds) and a gRPC deadline beyond it."""
        return self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout),
                                timeout=timeout + 15)

    def stats(self, cid: str) -> Any:
        return self.rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid),
                                      timeout=self._t(None)).stats

    # --- images ----------------------------------------------------------------------------

    def pull(self, ref: str, timeout: float | None = 120) -> str:
        r = self.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                               timeout=self._t(timeout))
        return r.image_ref

    def image_status(self, ref: str) -> Any:
        return self.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)),
                                    timeout=self._t(None)).image

    def remove_image(self, ref: str) -> None:
        self.img.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)),
                             timeout=self._t(None))
