"""Runs the whole mesh on one machine, for `make run` and the test suite (see devstack.mesh.Mesh)."""

import os

# The dev stack (and the test suite) use gRPC in-process and also start processes. With gRPC's
# fork support on, a child can abort in gRPC's poller between fork and exec (grpc/grpc#43055),
# which we saw as a service "exiting with -6" before it ran. Nothing here forks a process that
# goes on using gRPC, so the support is not needed. Set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
