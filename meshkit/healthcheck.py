"""`python -m meshkit.healthcheck [host:port]`: exits 0 when the gRPC health check says SERVING.

For container health checks; defaults to 127.0.0.1:$GRPC_PORT.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    address = sys.argv[1] if len(sys.argv) > 1 else f"127.0.0.1:{os.environ.get('GRPC_PORT', '50051')}"
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as error:
            sys.exit(f"{address}: {error.code().name}")
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit(f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")


if __name__ == "__main__":
    main()
