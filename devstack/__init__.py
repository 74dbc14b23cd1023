"""Runs the whole mesh on one machine, for `make run` and the test suite (see devstack.mesh.Mesh)."""

import os

# devstack starts processes with fork (a preexec_fn rules out vfork) from a process that holds gRPC
# channels. With gRPC's fork support on (the default of the Python wheels), its handlers restart the
# poller in the child, which can abort it before exec ("epoll_wait error: Bad file descriptor",
# grpc/grpc#43055). The children exec at once and need none of the parent's gRPC state. Set before
# gRPC is first imported, which reads it then.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
