"""python -m tweetmesh_cli: the same as the installed `tweetmesh` command."""

from tweetmesh_cli.cli import run

run()
