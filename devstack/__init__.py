"""Runs the whole mesh on one machine, for `make run` and the test suite (see devstack.mesh.Mesh)."""

import os

# devstack forks servers (PostgreSQL restarts in the fault tests, services) while gRPC client
# threads are busy. gRPC's fork handlers then make the fork slow and can crash the child before
# it execs (seen as a SIGSEGV'd postgres). We never use gRPC in a forked child, so turn them off;
# gRPC reads this once, when it is first imported, which is after this package in every entry point.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
