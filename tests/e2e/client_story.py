"""The story a third party runs with the installed tweetmesh-client wheel (tests/e2e/test_client_wheel.py
runs it in a clean venv, where nothing of the server can be imported).

Usage: python client_story.py TARGET CA_FILE|- ; prints one JSON object per step on stdout. After
the step "streaming" it waits for a line on stdin (the test restarts timeline_svc meanwhile), then
posts again: the stream must resume by itself and deliver that tweet too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from typing import Any

import grpc

from tweetmesh_client import Client, InvalidArgument, NotFound, TweetmeshError, Unauthenticated

PASSWORD = "correct horse battery"


def report(step: str, **facts: Any) -> None:
    print(json.dumps({"step": step, **facts}), flush=True)


async def story(target: str, credentials: grpc.ChannelCredentials | None) -> None:
    suffix = secrets.token_hex(3)
    async with (
        Client(target, credentials=credentials) as reader,
        Client(target, credentials=credentials) as writer,
    ):
        for client, name in ((reader, f"reader_{suffix}"), (writer, f"writer_{suffix}")):
            await client.sign_up(name, PASSWORD, display_name=name.title())
            await client.login(name, PASSWORD)
        author = await reader.user_by_handle(f"writer_{suffix}")
        followed = await reader.follow(author.user_id)
        report("followed", followers=followed.followers_count)

        reconnects: list[str] = []
        arrived: asyncio.Queue[str] = asyncio.Queue()

        async def listen() -> None:
            async for event in reader.stream_home(on_reconnect=lambda e: reconnects.append(e.reason)):
                if event.HasField("tweet"):
                    await arrived.put(event.tweet.tweet_id)

        listening = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # the stream is open (its first heartbeat comes at once)
        first = await writer.post(f"first from the client {suffix}")
        got_first = await asyncio.wait_for(arrived.get(), 10)
        home = [t.tweet_id async for t in reader.home_timeline(page_size=1, limit=5)]
        report("streaming", posted=first.tweet_id, streamed=got_first, home=home)

        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        second = await writer.post(f"second from the client {suffix}")
        got_second = await asyncio.wait_for(arrived.get(), 30)
        report("resumed", posted=second.tweet_id, streamed=got_second, reconnects=reconnects)
        listening.cancel()

        await writer.delete_tweet(first.tweet_id)
        try:
            await reader.tweet(first.tweet_id)
            report("deleted", error=None)
        except NotFound as error:
            report("deleted", error=type(error).__name__, reason=error.reason, field=error.metadata)
        try:
            await writer.post("")
        except InvalidArgument as error:
            fields = [v.field for v in error.field_violations]
            report("refused", code=error.code.name, fields=fields, message=error.message)
        await writer.logout()
        try:
            await writer.post("after logout")
        except Unauthenticated as error:
            report("logged-out", code=error.code.name, is_base=isinstance(error, TweetmeshError))


def main() -> None:
    target, ca_file = sys.argv[1], sys.argv[2]
    credentials = None
    if ca_file != "-":
        with open(ca_file, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
    asyncio.run(story(target, credentials))


if __name__ == "__main__":
    main()
