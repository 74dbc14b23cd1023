"""Runs the whole mesh on one machine, for `make run` and the test suite (see devstack.mesh.Mesh)."""
