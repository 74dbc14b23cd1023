"""The `tweetmesh` command: argument parsing and one function per subcommand, over gRPC stubs.

It talks native gRPC to Envoy's public port (or any service port) given by --target or
TWEETMESH_TARGET, and keeps the login token per target in a 0600 config file (tweetmesh_cli.config).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import json
import mimetypes
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from meshkit.mtls import MeshTlsError, load_mesh_tls
from meshkit.rpc_details import error_details
from tweetmesh.fanout.v1 import fanout_service_pb2 as fanout_pb
from tweetmesh.fanout.v1 import fanout_service_pb2_grpc as fanout_grpc
from tweetmesh.media.v1 import media_service_pb2 as media_pb
from tweetmesh.media.v1 import media_service_pb2_grpc as media_grpc
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc
from tweetmesh_cli.completion import completion_script
from tweetmesh_cli.config import Config, Session, config_path

DEFAULT_TARGET = "127.0.0.1:8080"
# fan-out's internal gRPC port (the admin API), never behind Envoy.
DEFAULT_FANOUT_TARGET = "127.0.0.1:50053"
TIMEOUT_SECONDS = 15.0
# Uploads go in chunks of this size (a gRPC message is at most 4 MiB by default).
UPLOAD_CHUNK_BYTES = 1024 * 1024
UPLOAD_TIMEOUT_SECONDS = 120.0
# A broken live stream is reopened after this long (doubling up to RECONNECT_MAX_SECONDS while
# it keeps failing, or after the server's RetryInfo delay), from the last tweet seen.
RECONNECT_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 30.0
# A watch reconnects after these: the mesh restarting or refusing for now (UNAVAILABLE, a limit's
# RESOURCE_EXHAUSTED), or a CANCELLED this side did not cause (the server gave up on a call it
# had not accepted in time: a failed open, not the end of the stream).
RECONNECT_ON = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
SEEN_REMEMBERED = 1000


class CliError(Exception):
    """Ends the command with this message and exit status 1."""


class Answers(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Keeps the answer of a command's last call (of a stream: its last message), which `--json`
    prints."""

    def __init__(self) -> None:
        self.last: Message | None = None

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._kept(continuation(details, request))

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._kept(continuation(details, requests))

    def _kept(self, outcome: Any) -> Any:
        if outcome.exception() is None:
            self.last = outcome.result()
        return outcome

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._passed_on(continuation(details, request))

    def _passed_on(self, messages: Iterator[Message]) -> Iterator[Message]:
        for message in messages:
            self.last = message
            yield message


class Client:
    """Stubs for the public services on one channel, with the saved session's token."""

    def __init__(self, target: str, config: Config) -> None:
        self.target = target
        self.config = config
        self.answers = Answers()
        self._channel = self.intercepted(grpc.insecure_channel(target))
        self.users = users_grpc.UserServiceStub(self._channel)
        self.tweets = tweets_grpc.TweetServiceStub(self._channel)
        self.timeline = timeline_grpc.TimelineServiceStub(self._channel)
        self.media = media_grpc.MediaServiceStub(self._channel)
        self.notifications = notifications_grpc.NotificationServiceStub(self._channel)

    def intercepted(self, channel: grpc.Channel) -> grpc.Channel:
        """`channel`, its answers kept for `--json`."""
        return grpc.intercept_channel(channel, self.answers)

    def close(self) -> None:
        self._channel.close()

    def session(self) -> Session:
        session = self.config.session(self.target)
        if session is None:
            raise CliError(f"not logged in to {self.target}: run `tweetmesh login HANDLE` first")
        return session

    def auth(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", f"Bearer {self.session().token}"),)

    def user_by_handle(self, handle: str) -> users_pb.User:
        reply = self.users.GetUserByHandle(
            users_pb.GetUserByHandleRequest(handle=handle.lstrip("@")), timeout=TIMEOUT_SECONDS
        )
        return reply.user


# ----- rendering


def _when(tweet: tweets_pb.Tweet, now: datetime | None = None) -> str:
    created = tweet.create_time.ToDatetime(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - created).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return created.strftime("%Y-%m-%d")


def render_tweet(tweet: tweets_pb.Tweet) -> str:
    """Two lines or more: who and when, then the text indented."""
    author = tweet.author
    name = f"{author.display_name} @{author.handle}" if author.handle else f"user {tweet.author_id}"
    reply = f" · reply to {tweet.reply_to_tweet_id}" if tweet.reply_to_tweet_id else ""
    edited = f" · edited {tweet.edit_count}x" if tweet.edit_count else ""
    lines = [f"  {line}" for line in tweet.text.splitlines()]
    lines += [f"  {render_media(media)}" for media in tweet.media]
    if tweet.quote_tweet_id:
        lines += [f"  │ {line}" for line in render_quoted(tweet).splitlines()]
    body = "\n".join(lines or ["  "])
    return f"{name} · {_when(tweet)}{reply}{edited} · id {tweet.tweet_id}\n{body}"


def render_quoted(tweet: tweets_pb.Tweet) -> str:
    """The tweet a quote shows, or what became of it."""
    if tweet.quote_status == tweets_pb.QUOTE_STATUS_AVAILABLE:
        return render_tweet(tweet.quoted_tweet)
    if tweet.quote_status == tweets_pb.QUOTE_STATUS_DELETED:
        return f"(quoted tweet {tweet.quote_tweet_id} was deleted)"
    if tweet.quote_status == tweets_pb.QUOTE_STATUS_UNAVAILABLE:
        return f"(quoted tweet {tweet.quote_tweet_id} is unavailable)"
    return f"(quoting tweet {tweet.quote_tweet_id})"


def render_media(media: tweets_pb.TweetMedia) -> str:
    """[image/png 300x200] /v1/media/123 "alt text" """
    seconds = media.duration.ToMilliseconds() / 1000
    length = f", {seconds:g} s" if seconds else ""
    alt = f' "{media.alt_text}"' if media.alt_text else ""
    return f"[{media.content_type} {media.width}x{media.height}{length}] {media.url}{alt}"


def render_user(user: users_pb.User) -> str:
    email = f" · {user.email} ({'verified' if user.email_verified else 'not verified'})" if user.email else ""
    return (
        f"{user.display_name} @{user.handle} (id {user.user_id}) · {user.followers_count} followers · "
        f"{user.following_count} following · {user.tweets_count} tweets{email}"
    )


_DID = {
    notifications_pb.NOTIFICATION_KIND_FOLLOW: "followed you",
    notifications_pb.NOTIFICATION_KIND_MENTION: "mentioned you",
    notifications_pb.NOTIFICATION_KIND_REPLY: "replied to you",
    notifications_pb.NOTIFICATION_KIND_LIKE: "liked your tweet",
    notifications_pb.NOTIFICATION_KIND_RETWEET: "retweeted your tweet",
}


def render_group(group: notifications_pb.NotificationGroup) -> str:
    """One group as a line ("@ann and 41 others liked your tweet"), its tweet below it."""
    names = [f"@{a.handle}" for a in group.sample_accounts] or ["someone"]
    others = group.notifications_count - 1
    who = names[0] if others <= 0 else f"{names[0]} and {others} other{'s' if others > 1 else ''}"
    mark = "* " if group.unread else "  "
    when = group.latest_time.ToDatetime(tzinfo=UTC)
    line = f"{mark}{who} {_DID.get(group.kind, 'notified you')}  ({when:%Y-%m-%d %H:%M} UTC)"
    if group.HasField("tweet"):
        text = group.tweet.text or f"(retweet of {group.tweet.retweet_of_tweet_id})"
        line += f"\n    {text}"
    return line


def describe_error(error: grpc.RpcError) -> str:
    """The status code and message, the bad fields, and what to do about a missing login."""
    code = error.code()
    text = f"{code.name.lower().replace('_', ' ')}: {error.details()}"
    for bad in error_details(error, error_details_pb2.BadRequest):
        text += "".join(f"\n  {v.field}: {v.description}" for v in bad.field_violations)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        text += "\n  (log in again: tweetmesh login HANDLE)"
    if code == grpc.StatusCode.UNAVAILABLE:
        text += "\n  (is the mesh running? `make run`, or set --target / TWEETMESH_TARGET)"
    return text


def as_json(message: Message) -> str:
    """One line of JSON, as Envoy's HTTP API writes it (proto field names, every field); a login
    token is left out (it stays in the config file, never printed)."""
    shown = type(message)()
    shown.CopyFrom(message)
    if "token" in shown.DESCRIPTOR.fields_by_name:
        shown.ClearField("token")
    return json_format.MessageToJson(
        shown, indent=None, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _answer_json(answer: Message | dict[str, Any] | None) -> str:
    if isinstance(answer, dict):
        return json.dumps(answer)
    return as_json(answer) if answer is not None else "{}"


def error_as_json(error: grpc.RpcError | CliError) -> str:
    """{"error": {code, message, reason, field_violations}}; a local error has no code."""
    if isinstance(error, CliError):
        return json.dumps({"error": {"message": str(error)}})
    infos = error_details(error, error_details_pb2.ErrorInfo)
    violations = [
        {"field": v.field, "description": v.description}
        for bad in error_details(error, error_details_pb2.BadRequest)
        for v in bad.field_violations
    ]
    described = {
        "code": error.code().name,
        "message": error.details(),
        "reason": infos[0].reason if infos else "",
        "field_violations": violations,
    }
    return json.dumps({"error": described})


# ----- commands


def _password(args: argparse.Namespace, confirm: bool) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise CliError("the passwords differ")
    return password


def _login(client: Client, who: str, password: str, out: TextIO) -> None:
    """Signs in with a handle, or with a verified email address (anything with an @ in it)."""
    request = (
        users_pb.LoginRequest(email=who, password=password)
        if "@" in who.lstrip("@")
        else users_pb.LoginRequest(handle=who.lstrip("@"), password=password)
    )
    reply = client.users.Login(request, timeout=TIMEOUT_SECONDS)
    client.config.save(client.target, Session(reply.token, reply.user.user_id, reply.user.handle))
    out.write(f"logged in as @{reply.user.handle} (token saved in {client.config.path})\n")


def cmd_signup(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    handle = args.handle.lstrip("@")
    password = _password(args, confirm=True)
    reply = client.users.CreateUser(
        users_pb.CreateUserRequest(
            handle=handle, display_name=args.display_name or "", password=password, email=args.email or ""
        ),
        timeout=TIMEOUT_SECONDS,
    )
    out.write(f"signed up: {render_user(reply.user)}\n")
    if args.email:
        out.write(f"a verification mail is on its way to {reply.user.email}: tweetmesh verify-email TOKEN\n")
    _login(client, handle, password, out)


def cmd_login(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    _login(client, args.handle, _password(args, confirm=False), out)


def cmd_verify_email(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    # Signed in, the token must be this account's; otherwise anyone holding the link may use it.
    session = client.config.session(client.target)
    metadata = client.auth() if session is not None else None
    client.users.VerifyEmail(
        users_pb.VerifyEmailRequest(token=args.token), metadata=metadata, timeout=TIMEOUT_SECONDS
    )
    out.write("email address verified: you can sign in with it\n")


def cmd_change_email(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    session = client.session()
    email = "" if args.remove else args.email or ""
    if not email and not args.remove:
        raise CliError("give the new address, or --remove")
    request = users_pb.ChangeEmailRequest(
        user_id=session.user_id, email=email, password=_password(args, confirm=False)
    )
    user = client.users.ChangeEmail(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS).user
    if user.email:
        out.write(f"email address set to {user.email}; a verification mail is on its way\n")
    else:
        out.write("email address removed\n")


def cmd_resend_verification(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = users_pb.SendVerificationEmailRequest(user_id=client.session().user_id)
    client.users.SendVerificationEmail(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS)
    out.write("a new verification mail is on its way\n")


def cmd_forgot_password(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    client.users.RequestPasswordReset(
        users_pb.RequestPasswordResetRequest(email=args.email), timeout=TIMEOUT_SECONDS
    )
    out.write(
        f"if {args.email} is the verified address of an account, a reset mail is on its way:"
        " tweetmesh reset-password TOKEN\n"
    )


def cmd_reset_password(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = users_pb.ResetPasswordRequest(token=args.token, new_password=_password(args, confirm=True))
    client.users.ResetPassword(request, timeout=TIMEOUT_SECONDS)
    # Every session of the account is gone, this one included if it was that account's.
    out.write("password changed and every session signed out: tweetmesh login HANDLE\n")


def cmd_logout(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    session = client.config.session(client.target)
    if session is not None:
        try:
            client.users.Logout(users_pb.LogoutRequest(), metadata=client.auth(), timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
        client.config.forget(client.target)
    out.write("logged out\n")


def cmd_delete_account(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if not args.yes:
        raise CliError("this deletes your account for good: run it again with --yes")
    session = client.session()
    request = users_pb.DeleteUserRequest(user_id=session.user_id, password=_password(args, confirm=False))
    client.users.DeleteUser(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS)
    client.config.forget(client.target)
    out.write(
        "account deleted: its tweets, likes, follows and notifications are being removed everywhere;"
        " its handle is free for others after the grace period (30 days by default)\n"
    )


def cmd_whoami(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    session = client.session()
    reply = client.users.GetUser(
        users_pb.GetUserRequest(user_id=session.user_id), metadata=client.auth(), timeout=TIMEOUT_SECONDS
    )
    out.write(f"{render_user(reply.user)} on {client.target}\n")


def cmd_follow(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle)
    request = users_pb.FollowUserRequest(user_id=user.user_id)
    followed = client.users.FollowUser(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS).user
    out.write(f"following {render_user(followed)}\n")


def cmd_unfollow(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle)
    request = users_pb.UnfollowUserRequest(user_id=user.user_id)
    client.users.UnfollowUser(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS)
    out.write(f"no longer following @{user.handle}\n")


_RELATIONS = {
    # command: (RPC, its request, what is printed after the handle)
    "block": ("BlockUser", users_pb.BlockUserRequest, "blocked: neither of you sees or follows the other"),
    "unblock": ("UnblockUser", users_pb.UnblockUserRequest, "unblocked"),
    "mute": (
        "MuteUser",
        users_pb.MuteUserRequest,
        "muted: their tweets leave your timeline (they are not told)",
    ),
    "unmute": ("UnmuteUser", users_pb.UnmuteUserRequest, "unmuted"),
}


def cmd_relate(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """block, unblock, mute or unmute someone by handle."""
    method, request, said = _RELATIONS[args.command]
    user = client.user_by_handle(args.handle)
    getattr(client.users, method)(
        request(user_id=user.user_id), metadata=client.auth(), timeout=TIMEOUT_SECONDS
    )
    out.write(f"@{user.handle} {said}\n")


def cmd_relations(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """The accounts you block (`blocks`) or mute (`mutes`), most recent first."""
    if args.command == "blocks":
        page: Any = client.users.ListBlocks(
            users_pb.ListBlocksRequest(**_paging(args)), metadata=client.auth(), timeout=TIMEOUT_SECONDS
        )
    else:
        page = client.users.ListMutes(
            users_pb.ListMutesRequest(**_paging(args)), metadata=client.auth(), timeout=TIMEOUT_SECONDS
        )
    _print_page(out, page.users, page.next_page_token, f"(you {args.command[:-1]} nobody)", render_user)


def cmd_suggestions(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Who to follow: accounts followed by those you follow (how many), then popular ones."""
    found = client.users.ListSuggestions(
        users_pb.ListSuggestionsRequest(user_id=client.session().user_id, page_size=args.limit),
        metadata=client.auth(),
        timeout=TIMEOUT_SECONDS,
    )
    if not found.suggestions:
        out.write("(no suggestions)\n")
    for suggestion in found.suggestions:
        count = suggestion.followed_by_count
        why = f"followed by {count} you follow" if count else "popular"
        out.write(f"{render_user(suggestion.user)} · {why}\n")


def cmd_post(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    text = sys.stdin.read().rstrip("\n") if args.text == ["-"] else " ".join(args.text)
    media_ids, alt_texts = _media_ids(client, args.media, args.alt)
    request = tweets_pb.CreateTweetRequest(
        text=text,
        reply_to_tweet_id=args.reply_to or "",
        quote_tweet_id=args.quote or "",
        # One id per invocation: gRPC retries of this call cannot post twice.
        request_id=uuid.uuid4().hex,
        media_ids=media_ids,
        alt_texts=alt_texts,
    )
    tweet = client.tweets.CreateTweet(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS).tweet
    out.write(f"posted:\n{render_tweet(tweet)}\n")


def _media_ids(client: Client, media: Sequence[str], alt: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The ids of --media (a file is uploaded first; anything else is the id of an upload) and
    the alt text of each, given after it."""
    if len(alt) > len(media):
        raise CliError("give each --alt after the --media it describes")
    media_ids = [_upload(client, item, None).media_id if os.path.isfile(item) else item for item in media]
    return media_ids, dict(zip(media_ids, alt, strict=False))


def cmd_edit(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    text = sys.stdin.read().rstrip("\n") if args.text == ["-"] else " ".join(args.text)
    media_ids, alt_texts = _media_ids(client, args.media, args.alt)
    request = tweets_pb.EditTweetRequest(
        tweet_id=args.tweet_id,
        text=text,
        media_ids=media_ids,
        alt_texts=alt_texts,
        clear_media=args.no_media,
        # One id per invocation: gRPC retries of this call cannot edit twice.
        request_id=uuid.uuid4().hex,
    )
    tweet = client.tweets.EditTweet(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS).tweet
    out.write(f"edited:\n{render_tweet(tweet)}\n")


def cmd_history(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.GetTweetHistoryRequest(tweet_id=args.tweet_id)
    versions = client.tweets.GetTweetHistory(request, timeout=TIMEOUT_SECONDS).versions
    for n, version in enumerate(versions):
        # Newest first: the current text, then what each edit replaced, back to the posted one.
        number = len(versions) - 1 - n
        label = "current" if n == 0 else f"edit {number}" if number else "posted"
        when = version.time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"  {line}" for line in version.text.splitlines()]
        lines += [f"  {render_media(media)}" for media in version.media]
        out.write(f"{label} · {when} UTC\n" + "\n".join(lines or ["  "]) + "\n\n")


def _upload_parts(data: bytes, content_type: str) -> Iterator[media_pb.UploadMediaStreamRequest]:
    yield media_pb.UploadMediaStreamRequest(start=media_pb.UploadStart(content_type=content_type))
    for start in range(0, len(data), UPLOAD_CHUNK_BYTES):
        yield media_pb.UploadMediaStreamRequest(chunk=data[start : start + UPLOAD_CHUNK_BYTES])


def _upload(client: Client, path: str, content_type: str | None) -> media_pb.Media:
    """Uploads a file in chunks; the server reads its type from its content and checks the claim
    (by default, the type its name suggests)."""
    claimed = content_type or mimetypes.guess_type(path)[0] or ""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    return client.media.UploadMediaStream(
        _upload_parts(data, claimed), metadata=client.auth(), timeout=UPLOAD_TIMEOUT_SECONDS
    ).media


def cmd_upload(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    media = _upload(client, args.path, args.content_type)
    size = f"{media.width}x{media.height}"
    if media.duration.ToMilliseconds():
        size += f", {media.duration.ToMilliseconds() / 1000:g} s"
    out.write(
        f"uploaded {media.content_type} ({size}, {media.size_bytes:,} bytes): media id {media.media_id}\n"
    )
    out.write(f"  {media.url}\n")


def _paging(args: argparse.Namespace) -> dict[str, Any]:
    """The page a listing command asks for (its --limit and --page-token)."""
    return {"page_size": args.limit, "page_token": args.page_token or ""}


def _tweet_block(tweet: tweets_pb.Tweet) -> str:
    return f"{render_tweet(tweet)}\n"  # a blank line after each tweet


def _print_page(
    out: TextIO,
    items: Sequence[Any],
    next_page_token: str,
    empty: str,
    render: Callable[[Any], str] = _tweet_block,
) -> None:
    """A page of tweets (or of users or notification groups, with their render), the empty page's note,
    the next page's token."""
    if not items:
        out.write(f"{empty}\n")
    for item in items:
        out.write(f"{render(item)}\n")
    if next_page_token:
        out.write(f"more: --page-token {next_page_token}\n")


def cmd_timeline(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = timeline_pb.GetHomeTimelineRequest(**_paging(args))
    page = client.timeline.GetHomeTimeline(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, "(your home timeline is empty: follow someone)")


def cmd_tweets(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle)
    request = tweets_pb.ListUserTweetsRequest(user_id=user.user_id, **_paging(args))
    page = client.tweets.ListUserTweets(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, f"(@{user.handle} has not posted yet)")


def cmd_quotes(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.ListQuotesRequest(tweet_id=args.tweet_id, **_paging(args))
    page = client.tweets.ListQuotes(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, "(nobody has quoted it)")


def cmd_conversation(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.GetConversationRequest(tweet_id=args.tweet_id, max_depth=args.depth, **_paging(args))
    found = client.tweets.GetConversation(request, timeout=TIMEOUT_SECONDS)
    # Each entry indented by its depth below the first tweet shown.
    top = found.ancestors[0].depth if found.ancestors else 0
    for entry in (*found.ancestors, found.tweet, *found.replies):
        shown = f"(deleted tweet {entry.tweet_id})" if entry.deleted else render_tweet(entry.tweet)
        lines = shown.splitlines()
        if entry.tweet_id == found.tweet.tweet_id:
            lines[0] += " ◀"
        indent = "    " * (entry.depth - top)
        out.write("".join(f"{indent}{line}\n" for line in lines) + "\n")
    if found.next_page_token:
        out.write(f"more: --page-token {found.next_page_token}\n")


def cmd_bookmarks(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.ListBookmarksRequest(**_paging(args))
    page = client.tweets.ListBookmarks(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, "(no bookmarks)")


def cmd_trends(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.GetTrendsRequest(window=args.window, limit=args.limit)
    found = client.tweets.GetTrends(request, timeout=TIMEOUT_SECONDS)
    if not found.trends:
        out.write(f"(nothing trending over {found.window})\n")
    for n, trend in enumerate(found.trends, 1):
        usual = f"usually {trend.expected:.1f}"
        out.write(f"{n:>2}. #{trend.tag}  {trend.count} tweets ({usual}), rise {trend.score:.1f}\n")


def cmd_search(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    query = " ".join(args.query)
    if args.users:
        found = client.users.SearchUsers(
            users_pb.SearchUsersRequest(query=query, **_paging(args)),
            timeout=TIMEOUT_SECONDS,
        )
        _print_page(out, found.users, found.next_page_token, f"(nobody matches {query!r})", render_user)
        return
    page = client.tweets.SearchTweets(
        tweets_pb.SearchTweetsRequest(query=query, **_paging(args)),
        timeout=TIMEOUT_SECONDS,
    )
    _print_page(out, page.tweets, page.next_page_token, f"(no tweets match {query!r})")


StreamEvent = timeline_pb.StreamHomeTimelineResponse | timeline_pb.StreamGlobalTimelineResponse


def _stream(client: Client, since: str, everyone: bool) -> Iterator[StreamEvent]:
    """The home stream, or with `everyone` the global one (the same events, no sign-in)."""
    if everyone:
        return client.timeline.StreamGlobalTimeline(
            timeline_pb.StreamGlobalTimelineRequest(since_tweet_id=since)
        )
    home = timeline_pb.StreamHomeTimelineRequest(since_tweet_id=since)
    return client.timeline.StreamHomeTimeline(home, metadata=client.auth())


def _reconnect_after(error: grpc.RpcError, since: str) -> tuple[float | None, str]:
    """(the server's RetryInfo delay, if any; where to resume: the server's resume point, if it
    gave one, else `since`) after a broken stream."""
    delay = next(
        (
            d.retry_delay.ToTimedelta().total_seconds()
            for d in error_details(error, error_details_pb2.RetryInfo)
        ),
        None,
    )
    resume = next(
        (
            i.metadata["since_tweet_id"]
            for i in error_details(error, error_details_pb2.ErrorInfo)
            if i.metadata.get("since_tweet_id")
        ),
        since,
    )
    return delay, resume


def _event_text(event: StreamEvent, args: argparse.Namespace) -> str | None:
    """What `watch` prints for a stream's event (heartbeats only with --heartbeats)."""
    kind = event.WhichOneof("event")
    if kind == "heartbeat" and not args.heartbeats:
        return None
    if args.json:
        return f"{as_json(event)}\n"
    if kind == "tweet":
        return f"{render_tweet(event.tweet)}\n\n"
    if kind == "gap":
        reader = "global" if args.everyone else "timeline"
        return (
            f"(more tweets came while you were away than a reconnect replays: read the ones"
            f" before {event.gap.before_tweet_id} with"
            f" `tweetmesh {reader} --page-token {event.gap.page_token}`)\n\n"
        )
    if kind == "update":
        return f"(tweet {event.update.tweet_id} was edited)\n{render_tweet(event.update)}\n\n"
    if kind == "deletion":
        return f"(tweet {event.deletion.tweet_id} was deleted)\n\n"
    return f"(heartbeat {event.heartbeat.time.ToDatetime(tzinfo=UTC):%H:%M:%S})\n"


def cmd_watch(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Prints tweets as they arrive; after a break (a service restarting, the network, a failed
    open) reconnects, replaying from the last tweet seen, until Ctrl-C."""
    since = args.since or ""
    seen: dict[str, None] = {}  # insertion-ordered: the oldest goes first
    # With --json, each event shown is one line of JSON on stdout and the rest goes to stderr.
    notes = sys.stderr if args.json else out
    whose = "everyone's tweets" if args.everyone else f"@{client.session().handle}'s home timeline"
    notes.write(f"watching {whose} (Ctrl-C to stop)\n")
    notes.flush()
    wait = RECONNECT_SECONDS
    while True:
        told: float | None = None
        try:
            for event in _stream(client, since, args.everyone):
                kind = event.WhichOneof("event")
                if kind == "tweet" and event.tweet.tweet_id in seen:
                    continue
                if kind == "tweet":
                    # A replay after a reconnect may repeat a tweet: show each once (the replay
                    # overlaps by seconds, so the recent ids are enough to remember).
                    seen[event.tweet.tweet_id] = None
                    if len(seen) > SEEN_REMEMBERED:
                        del seen[next(iter(seen))]
                    since = event.tweet.tweet_id
                    wait = RECONNECT_SECONDS
                shown = _event_text(event, args)
                if shown is not None:
                    out.write(shown)
                    out.flush()
            # A live stream has no end: the server closed it because it is stopping.
            notes.write("(stream closed by the server; reconnecting)\n")
        except grpc.RpcError as error:
            if error.code() not in RECONNECT_ON:
                raise
            told, since = _reconnect_after(error, since)
            notes.write(
                f"(stream interrupted: {error.code().name.lower()}: {error.details()}; reconnecting)\n"
            )
        notes.flush()
        time.sleep(told if told is not None else wait)
        wait = min(wait * 2, RECONNECT_MAX_SECONDS)


# The commands that act on one tweet of the caller's choosing: name -> (RPC, request, help, what
# is said when done).
TWEET_ACTIONS: dict[str, tuple[str, Callable[..., Message], str, str]] = {
    "like": ("LikeTweet", tweets_pb.LikeTweetRequest, "like a tweet", "liked {}"),
    "unlike": ("UnlikeTweet", tweets_pb.UnlikeTweetRequest, "take your like back", "no longer liking {}"),
    "retweet": ("Retweet", tweets_pb.RetweetRequest, "retweet a tweet to your followers", "retweeted {}"),
    "unretweet": (
        "Unretweet",
        tweets_pb.UnretweetRequest,
        "take your retweet back",
        "no longer retweeting {}",
    ),
    "bookmark": (
        "BookmarkTweet",
        tweets_pb.BookmarkTweetRequest,
        "keep a tweet in your bookmarks (seen by you only)",
        "bookmarked {}",
    ),
    "unbookmark": (
        "UnbookmarkTweet",
        tweets_pb.UnbookmarkTweetRequest,
        "remove a tweet from your bookmarks",
        "removed {} from your bookmarks",
    ),
    "delete": (
        "DeleteTweet",
        tweets_pb.DeleteTweetRequest,
        "delete your tweet (or retweet) everywhere",
        "deleted {}",
    ),
}


def tweet_action(rpc: str, request: Callable[..., Message], done: str) -> Command:
    def run(client: Client, args: argparse.Namespace, out: TextIO) -> None:
        call = getattr(client.tweets, rpc)
        call(request(tweet_id=args.tweet_id), metadata=client.auth(), timeout=TIMEOUT_SECONDS)
        out.write(f"{done.format(args.tweet_id)}\n")

    return run


def cmd_show(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    tweet = client.tweets.GetTweet(
        tweets_pb.GetTweetRequest(tweet_id=args.tweet_id), timeout=TIMEOUT_SECONDS
    ).tweet
    counts = (
        f"{tweet.reply_count} replies · {tweet.retweet_count} retweets · {tweet.like_count} likes"
        f" · {tweet.quote_count} quotes"
    )
    out.write(f"{render_tweet(tweet)}\n  {counts}\n")


def cmd_replies(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.ListRepliesRequest(tweet_id=args.tweet_id, **_paging(args))
    page = client.tweets.ListReplies(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, "(no replies)")


def cmd_likers(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.ListLikingUsersRequest(tweet_id=args.tweet_id, **_paging(args))
    page = client.tweets.ListLikingUsers(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.users, page.next_page_token, "(nobody has liked it)", render_user)


def cmd_likes(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle)
    request = tweets_pb.ListLikedTweetsRequest(user_id=user.user_id, **_paging(args))
    page = client.tweets.ListLikedTweets(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, f"(@{user.handle} has liked nothing)")


def cmd_mentions(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle) if args.handle else None
    user_id = user.user_id if user else client.session().user_id
    request = tweets_pb.ListMentionsRequest(user_id=user_id, **_paging(args))
    page = client.tweets.ListMentions(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, "(no mentions)")


def cmd_hashtag(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.ListHashtagTweetsRequest(tag=args.tag.lstrip("#"), **_paging(args))
    page = client.tweets.ListHashtagTweets(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, f"(no tweets tagged #{request.tag})")


def cmd_global(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    request = tweets_pb.GetGlobalTimelineRequest(**_paging(args))
    page = client.tweets.GetGlobalTimeline(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.tweets, page.next_page_token, "(nobody has posted yet)")


def cmd_profile(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle) if args.handle else None
    if user is None:  # your own, with what only you see (your email address)
        request = users_pb.GetUserRequest(user_id=client.session().user_id)
        user = client.users.GetUser(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS).user
    out.write(f"{render_user(user)}\n")
    if user.bio:
        out.write(f"  {user.bio}\n")


def cmd_update_profile(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if args.display_name is None and args.bio is None:
        raise CliError("give --display-name, --bio or both")
    request = users_pb.UpdateUserRequest(user_id=client.session().user_id)
    if args.display_name is not None:
        request.display_name = args.display_name
    if args.bio is not None:
        request.bio = args.bio
    user = client.users.UpdateUser(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS).user
    out.write(f"updated: {render_user(user)}\n")
    if user.bio:
        out.write(f"  {user.bio}\n")


def cmd_change_password(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Every session of the account is revoked; the fresh token the answer carries is saved."""
    session = client.session()
    if args.password_stdin:  # two lines: the current password, then the new one
        old, new = sys.stdin.readline().rstrip("\n"), sys.stdin.readline().rstrip("\n")
    else:
        old = getpass.getpass("current password: ")
        new = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != new:
            raise CliError("the passwords differ")
    request = users_pb.ChangePasswordRequest(user_id=session.user_id, old_password=old, new_password=new)
    reply = client.users.ChangePassword(request, metadata=client.auth(), timeout=TIMEOUT_SECONDS)
    client.config.save(client.target, Session(reply.token, session.user_id, session.handle))
    out.write("password changed: every other session is signed out; this one goes on with a new token\n")


def cmd_followers(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle)
    request = users_pb.ListFollowersRequest(user_id=user.user_id, **_paging(args))
    page = client.users.ListFollowers(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.users, page.next_page_token, f"(nobody follows @{user.handle})", render_user)


def cmd_following(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    user = client.user_by_handle(args.handle)
    request = users_pb.ListFollowingRequest(user_id=user.user_id, **_paging(args))
    page = client.users.ListFollowing(request, timeout=TIMEOUT_SECONDS)
    _print_page(out, page.users, page.next_page_token, f"(@{user.handle} follows nobody)", render_user)


def cmd_download(client: Client, args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    """Writes a media's bytes (or its thumbnail's) to a file; `--json` prints what was written."""
    chunks: Iterator[media_pb.GetMediaResponse | media_pb.GetMediaThumbnailResponse]
    if args.thumbnail:
        chunks = client.media.GetMediaThumbnail(
            media_pb.GetMediaThumbnailRequest(media_id=args.media_id), timeout=UPLOAD_TIMEOUT_SECONDS
        )
    else:
        chunks = client.media.GetMedia(
            media_pb.GetMediaRequest(media_id=args.media_id), timeout=UPLOAD_TIMEOUT_SECONDS
        )
    content_type, data = "", bytearray()
    for chunk in chunks:
        content_type = content_type or chunk.body.content_type
        data += chunk.body.data
    suffix = "-thumbnail" if args.thumbnail else ""
    path = args.output or f"{args.media_id}{suffix}{mimetypes.guess_extension(content_type) or ''}"
    try:
        with open(path, "wb") as file:
            file.write(data)
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror}") from None
    out.write(f"wrote {len(data):,} bytes of {content_type} to {path}\n")
    return {"media_id": args.media_id, "content_type": content_type, "size_bytes": len(data), "path": path}


@contextlib.contextmanager
def _fanout(client: Client, args: argparse.Namespace) -> Iterator[fanout_grpc.FanoutServiceStub]:
    if args.mesh_tls_dir:
        try:
            tls = load_mesh_tls(Path(args.mesh_tls_dir), serves=False)
        except MeshTlsError as error:
            raise CliError(f"--mesh-tls-dir: {error}") from None
        opened = grpc.secure_channel(args.fanout_target, tls.channel_credentials())
    else:
        opened = grpc.insecure_channel(args.fanout_target)
    with client.intercepted(opened) as channel:
        yield fanout_grpc.FanoutServiceStub(channel)


def cmd_fanout_stats(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Fan-out's progress: each event stream's backlog, and what it delivered and gave up on."""
    with _fanout(client, args) as fanout:
        stats = fanout.GetFanoutStats(fanout_pb.GetFanoutStatsRequest(), timeout=TIMEOUT_SECONDS)
    for stream in stats.streams:
        out.write(
            f"{stream.stream}: {stream.lag:,} not yet read, {stream.pending:,} read and not yet done,"
            f" {stream.length:,} held, {stream.consumers} consumers\n"
        )
    out.write(
        f"delivered {stats.delivered:,} timeline entries; {stats.dead_lettered:,} events dead-lettered\n"
    )


def cmd_dead_letters_list(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """The fan-out events given up on, oldest first: stream, id, why, and the event."""
    request = fanout_pb.ListDeadLettersRequest(stream=args.stream or "", **_paging(args))
    with _fanout(client, args) as fanout:
        page = fanout.ListDeadLetters(request, timeout=TIMEOUT_SECONDS)
    if not page.dead_letters:
        out.write("(no dead letters)\n")
    for letter in page.dead_letters:
        event = letter.event or f"(undecodable: {letter.data[:60]!r})"
        out.write(
            f"{letter.stream} {letter.dead_letter_id} (entry {letter.entry_id}, {letter.reason}): {event}\n"
        )
    if page.next_page_token:
        out.write(f"more: --page-token {page.next_page_token}\n")


def cmd_dead_letters_replay(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Puts dead letters back on their event stream, for fan-out to handle again."""
    if args.all == bool(args.ids):
        raise CliError("give the dead-letter ids to replay, or --all")
    request = fanout_pb.ReplayDeadLettersRequest(stream=args.stream, dead_letter_ids=args.ids, all=args.all)
    with _fanout(client, args) as fanout:
        reply = fanout.ReplayDeadLetters(request, timeout=TIMEOUT_SECONDS)
    out.write(f"replayed {reply.replayed} dead letter(s) onto {args.stream}\n")


def cmd_notifications(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Your notifications in groups, newest first (unread ones marked *), with the unread count."""
    unread = client.notifications.GetUnreadCount(
        notifications_pb.GetUnreadCountRequest(), metadata=client.auth(), timeout=TIMEOUT_SECONDS
    )
    page = client.notifications.ListNotifications(
        notifications_pb.ListNotificationsRequest(**_paging(args)),
        metadata=client.auth(),
        timeout=TIMEOUT_SECONDS,
    )
    out.write(f"{unread.count}{'+' if unread.more else ''} unread\n")
    _print_page(out, page.groups, page.next_page_token, "(no notifications)", render_group)


def cmd_mark_read(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Marks your notifications read up to an id (default: the newest)."""
    up_to = args.up_to
    if not up_to:
        newest = client.notifications.ListNotifications(
            notifications_pb.ListNotificationsRequest(page_size=1),
            metadata=client.auth(),
            timeout=TIMEOUT_SECONDS,
        )
        if not newest.groups:
            out.write("(no notifications)\n")
            return
        up_to = newest.groups[0].latest_notification_id
    marked = client.notifications.MarkNotificationsRead(
        notifications_pb.MarkNotificationsReadRequest(up_to_id=up_to),
        metadata=client.auth(),
        timeout=TIMEOUT_SECONDS,
    )
    out.write(f"read up to {marked.read_up_to_id}\n")


# ----- the parser


# A command prints its answer to the TextIO; what it returns (if anything) is what --json prints
# instead of the answer of its last call.
Command = Callable[[Client, argparse.Namespace, TextIO], dict[str, Any] | None]


def _admin_commands(commands: Any) -> None:
    """`tweetmesh admin ...`: what an operator runs against the services' internal ports."""
    admin = commands.add_parser("admin", help="operate the mesh (its internal ports)").add_subparsers(
        dest="admin", required=True, metavar="WHAT"
    )

    def fanout_target(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--fanout-target",
            default=os.environ.get("TWEETMESH_FANOUT_TARGET") or DEFAULT_FANOUT_TARGET,
            help=f"fanout_svc's gRPC address; env TWEETMESH_FANOUT_TARGET; default {DEFAULT_FANOUT_TARGET}",
        )
        parser.add_argument(
            "--mesh-tls-dir",
            default=os.environ.get("TWEETMESH_MESH_TLS_DIR"),
            help="when the mesh speaks mutual TLS: a folder with the client certificate to present"
            " (tls.crt, tls.key) and the mesh's CA (ca.crt); env TWEETMESH_MESH_TLS_DIR",
        )

    stats = admin.add_parser(
        "fanout-stats", help="fan-out's backlog per event stream, deliveries, dead letters"
    )
    stats.set_defaults(run=cmd_fanout_stats)
    fanout_target(stats)
    dead = admin.add_parser(
        "dead-letters", help="fan-out events given up on: list them, replay them once the cause is fixed"
    )
    fanout_target(dead)
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the dead letters, oldest first")
    listing.set_defaults(run=cmd_dead_letters_list)
    listing.add_argument("--stream", help="events:tweets or events:follows (default: both)")
    listing.add_argument("--limit", type=int, default=20, help="per page (at most 100)")
    listing.add_argument("--page-token", help="the next page, as printed after a page")
    replay = actions.add_parser("replay", help="put dead letters back on their event stream")
    replay.set_defaults(run=cmd_dead_letters_replay)
    replay.add_argument("--stream", required=True, help="events:tweets or events:follows")
    replay.add_argument("ids", nargs="*", metavar="DEAD_LETTER_ID", help="as `list` prints them")
    replay.add_argument("--all", action="store_true", help="every dead letter of the stream")


class AddCommand(Protocol):
    def __call__(
        self, name: str, run: Command, text: str, *, live: bool = False
    ) -> argparse.ArgumentParser: ...


def _json_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=default,
        help="print the answer as one line of JSON (as the HTTP API writes it; watch: a line per event)",
    )


def _password_stdin(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _paged(sub: argparse.ArgumentParser, what: str = "tweets") -> None:
    sub.add_argument("--limit", type=int, default=20, help=f"{what} per page (at most 100)")
    sub.add_argument("--page-token", help="the next page, as printed after a page")


def _account_commands(command: AddCommand) -> None:
    for name, run, text in (
        ("signup", cmd_signup, "create an account and log in"),
        ("login", cmd_login, "log in and keep the token in the config file"),
    ):
        sub = command(name, run, text)
        if name == "signup":
            sub.add_argument("handle", help="1-15 of A-Z a-z 0-9 _")
            sub.add_argument("--display-name", help="defaults to the handle")
            sub.add_argument("--email", help="an email address (a verification mail is sent to it)")
        else:
            sub.add_argument("handle", metavar="HANDLE_OR_EMAIL", help="a handle or a verified email address")
        _password_stdin(sub)
    command("verify-email", cmd_verify_email, "verify your email address with the mailed token").add_argument(
        "token"
    )
    change_email = command(
        "change-email", cmd_change_email, "set or change your email address (or --remove it)"
    )
    change_email.add_argument("email", nargs="?")
    change_email.add_argument("--remove", action="store_true", help="remove the address from the account")
    _password_stdin(change_email)
    command("resend-verification", cmd_resend_verification, "mail a new verification token to your address")
    command("forgot-password", cmd_forgot_password, "mail a password-reset token").add_argument("email")
    reset = command("reset-password", cmd_reset_password, "choose a new password with the mailed token")
    reset.add_argument("token")
    _password_stdin(reset)
    command("logout", cmd_logout, "revoke the saved token and forget it")
    command("whoami", cmd_whoami, "the logged-in account")
    delete = command(
        "delete-account", cmd_delete_account, "delete your account and everything of it, for good"
    )
    delete.add_argument("--yes", action="store_true", help="yes, delete it")
    _password_stdin(delete)
    command("follow", cmd_follow, "follow someone").add_argument("handle")
    command("unfollow", cmd_unfollow, "stop following someone").add_argument("handle")
    command("profile", cmd_profile, "someone's profile (yours without a handle)").add_argument(
        "handle", nargs="?"
    )
    update = command("update-profile", cmd_update_profile, "change your display name or bio")
    update.add_argument("--display-name")
    update.add_argument("--bio", help='up to 160 characters; "" clears it')
    change_password = command(
        "change-password", cmd_change_password, "change your password (every other session is signed out)"
    )
    change_password.add_argument(
        "--password-stdin", action="store_true", help="read the current, then the new password from stdin"
    )
    for name, run, text in (
        ("followers", cmd_followers, "the accounts following someone, newest first"),
        ("following", cmd_following, "the accounts someone follows, newest first"),
    ):
        listed = command(name, run, text)
        listed.add_argument("handle")
        _paged(listed, "accounts")
    _relation_commands(command)


def _relation_commands(command: AddCommand) -> None:
    for name, text in (
        ("block", "block someone: the follows between you end, neither sees the other"),
        ("unblock", "stop blocking someone"),
        ("mute", "mute someone: their tweets leave your timeline and notifications, silently"),
        ("unmute", "stop muting someone"),
    ):
        command(name, cmd_relate, text).add_argument("handle")
    for name, text in (("blocks", "the accounts you block"), ("mutes", "the accounts you mute")):
        _paged(command(name, cmd_relations, text), "accounts")


def _media_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--media",
        action="append",
        default=[],
        metavar="FILE_OR_MEDIA_ID",
        help="an image or video to show (a file is uploaded first); up to 4",
    )
    sub.add_argument(
        "--alt", action="append", default=[], metavar="TEXT", help="alt text of the --media before it"
    )


def _writing_commands(command: AddCommand) -> None:
    post = command("post", cmd_post, "post a tweet (`-` reads the text from stdin)")
    post.add_argument("text", nargs="*")
    post.add_argument("--reply-to", metavar="TWEET_ID")
    post.add_argument("--quote", metavar="TWEET_ID", help="quote this tweet (shown with yours)")
    _media_options(post)
    edit = command(
        "edit",
        cmd_edit,
        "edit your tweet's text (within 30 minutes of posting, 5 times at most); its media stay unless"
        " --media or --no-media",
    )
    edit.add_argument("tweet_id")
    edit.add_argument("text", nargs="*")
    _media_options(edit)
    edit.add_argument("--no-media", action="store_true", help="remove the tweet's media")
    upload = command(
        "upload", cmd_upload, "upload an image (JPEG, PNG, GIF, WebP) or a video (MP4); prints its media id"
    )
    upload.add_argument("path")
    upload.add_argument("--content-type", help="default: guessed from the file's name")
    for name, (rpc, request, text, done) in TWEET_ACTIONS.items():
        command(name, tweet_action(rpc, request, done), text).add_argument("tweet_id")
    download = command("download", cmd_download, "save a media's bytes (or its thumbnail) to a file")
    download.add_argument("media_id")
    download.add_argument("-o", "--output", help="default: MEDIA_ID and the type's extension")
    download.add_argument("--thumbnail", action="store_true", help="the thumbnail (a JPEG) instead")


def _reading_commands(command: AddCommand) -> None:
    _paged(command("timeline", cmd_timeline, "your home timeline, newest first"))
    _paged(command("bookmarks", cmd_bookmarks, "your bookmarks, most recently bookmarked first"))
    tweets = command("tweets", cmd_tweets, "someone's tweets, newest first")
    tweets.add_argument("handle")
    _paged(tweets)
    command("history", cmd_history, "a tweet's versions, newest first (its edits)").add_argument("tweet_id")
    command("show", cmd_show, "one tweet, with its counts").add_argument("tweet_id")
    for name, run, text, what in (
        ("replies", cmd_replies, "the replies to a tweet, oldest first", "replies"),
        ("likers", cmd_likers, "the accounts that liked a tweet, most recent first", "accounts"),
    ):
        listed = command(name, run, text)
        listed.add_argument("tweet_id")
        _paged(listed, what)
    likes = command("likes", cmd_likes, "the tweets someone liked, most recent first")
    likes.add_argument("handle")
    _paged(likes)
    mentions = command("mentions", cmd_mentions, "the tweets mentioning someone (you without a handle)")
    mentions.add_argument("handle", nargs="?")
    _paged(mentions)
    hashtag = command("hashtag", cmd_hashtag, "the tweets with a #tag, newest first")
    hashtag.add_argument("tag")
    _paged(hashtag)
    _paged(command("global", cmd_global, "everyone's tweets, newest first"))
    quotes = command("quotes", cmd_quotes, "the tweets quoting a tweet, newest first")
    quotes.add_argument("tweet_id")
    _paged(quotes)
    thread = command(
        "conversation",
        cmd_conversation,
        "a tweet with those it replies to and the replies below it, as a tree",
    )
    thread.add_argument("tweet_id")
    thread.add_argument("--depth", type=int, default=0, help="levels of replies (default 8, at most 32)")
    _paged(thread, "replies")
    search = command(
        "search",
        cmd_search,
        'tweets matching words, "phrases", #tags, -excluded words, OR (best first); --users for people',
    )
    search.add_argument("query", nargs="+")
    search.add_argument("--users", action="store_true", help="people whose handle or name starts with it")
    _paged(search, "results")
    command("suggestions", cmd_suggestions, "who to follow").add_argument(
        "--limit", type=int, default=20, help="accounts (at most 100)"
    )
    _paged(command("notifications", cmd_notifications, "your notifications, grouped, newest first"), "groups")
    mark_read = command("mark-read", cmd_mark_read, "mark your notifications read")
    mark_read.add_argument("--up-to", metavar="NOTIFICATION_ID", help="this one and older (default: all)")
    trends = command("trends", cmd_trends, "hashtags rising above their usual use, best first")
    trends.add_argument("--window", default="1h", help="5m, 15m, 1h (default) or 6h")
    trends.add_argument("--limit", type=int, default=10, help="how many (at most 50)")
    watch = command("watch", cmd_watch, "your home timeline live, as tweets arrive", live=True)
    watch.add_argument("--since", metavar="TWEET_ID", help="first replay what came after this tweet")
    watch.add_argument("--heartbeats", action="store_true", help="show the stream's heartbeats too")
    watch.add_argument("--global", dest="everyone", action="store_true", help="everyone's tweets (no login)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="tweetmesh",
        description="Use tweetmesh from a terminal: sign up, post, follow, read and watch timelines.",
    )
    root.add_argument(
        "--target",
        default=os.environ.get("TWEETMESH_TARGET") or DEFAULT_TARGET,
        help=f"gRPC address of the mesh (Envoy); env TWEETMESH_TARGET; default {DEFAULT_TARGET}",
    )
    _json_option(root, False)
    root.set_defaults(live=False)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, text: str, *, live: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run, live=live)
        _json_option(sub, argparse.SUPPRESS)  # before or after the command's name
        return sub

    _account_commands(command)
    _writing_commands(command)
    _reading_commands(command)
    _admin_commands(commands)
    shell = commands.add_parser(
        "completion",
        help="print the shell completion script (bash; zsh with bashcompinit)",
        description="Load it with: source <(tweetmesh completion) (in ~/.bashrc to keep it)",
    )
    shell.set_defaults(run=cmd_completion)
    return root


def cmd_completion(client: Client | None, args: argparse.Namespace, out: TextIO) -> None:
    out.write(completion_script(parser()))


def main(
    argv: Sequence[str] | None = None, out: TextIO = sys.stdout, env: dict[str, str] | None = None
) -> int:
    args = parser().parse_args(argv)
    if args.run is cmd_completion:
        cmd_completion(None, args, out)
        return 0
    client = Client(args.target, Config(config_path(env)))
    run: Any = args.run
    try:
        if not args.json or args.live:  # a live command prints its own JSON, a line per event
            run(client, args, out)
        else:  # the answer of the command's last call (or what the command says it did)
            answer = run(client, args, io.StringIO())
            out.write(f"{_answer_json(answer if answer is not None else client.answers.last)}\n")
    except (grpc.RpcError, CliError) as error:
        if args.json:
            print(error_as_json(error), file=sys.stderr)
        elif isinstance(error, CliError):
            print(f"tweetmesh: {error}", file=sys.stderr)
        else:
            print(f"tweetmesh: {describe_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
    return 0


def run() -> None:
    """The installed `tweetmesh` command."""
    sys.exit(main())
