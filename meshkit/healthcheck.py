"""The gRPC health check as a function, and `python -m meshkit.healthcheck [host:port [service]]`
for container probes (exits 0 when SERVING; defaults to 127.0.0.1:$GRPC_HEALTH_PORT if set, else
127.0.0.1:$GRPC_PORT, and the overall status). It speaks plain text: with mutual TLS on the gRPC
port (GRPC_TLS_DIR), probes ask the health-only port GRPC_HEALTH_PORT.

Two questions, two names: the overall status ("") is readiness (SERVING while the dependencies
answer), the service name LIVENESS is liveness (SERVING while the process serves at all)."""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Probed by Kubernetes' liveness and startup probes: it does not follow PostgreSQL or Redis, so an
# outage of theirs takes a pod out of rotation (readiness) without restarting it.
LIVENESS = "liveness"


def health_status(channel: grpc.Channel, timeout: float = 3.0, service: str = "") -> str:
    """SERVING, NOT_SERVING, ... of `service` (default: the server's overall health), or the call's
    status code name (UNAVAILABLE, DEADLINE_EXCEEDED) when it does not answer."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    except grpc.RpcError as error:
        return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main() -> None:
    health_port = os.environ.get("GRPC_HEALTH_PORT", "")
    port = health_port if health_port not in ("", "0") else os.environ.get("GRPC_PORT", "50051")
    address = sys.argv[1] if len(sys.argv) > 1 else f"127.0.0.1:{port}"
    service = sys.argv[2] if len(sys.argv) > 2 else ""
    with grpc.insecure_channel(address) as channel:
        status = health_status(channel, service=service)
    if status != "SERVING":
        sys.exit(f"{address} {service or '(overall)'}: {status}")


if __name__ == "__main__":
    main()
