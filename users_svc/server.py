"""users_svc's gRPC edge: requests to domain calls, domain results to responses."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc
from argon2 import PasswordHasher

from mail import MailRelay, RetryPolicy, SmtpSender
from mail.postgres import PostgresMailQueue
from meshkit import metrics
from meshkit.auth import Authenticator, bearer_token
from meshkit.ids import require_id
from meshkit.outbox import Outbox
from meshkit.pagination import PageTokens
from meshkit.protos import now_timestamp, timestamp
from meshkit.ratelimit import Limit, Policies, Scope, method_name
from meshkit.runtime import Runtime
from social import ACCOUNTS_STREAM, Relation, RelationsCache, TweetsPeer
from social.caches import OwnerCache
from social.erasure import account_eraser
from social.follower_lists import FollowerLists
from social.limits import READ, READ_SIGNED_IN, WRITE
from social.timelines import HOME_PREFIX, key_start
from tweetmesh.users.v1 import users_service_pb2 as pb
from tweetmesh.users.v1 import users_service_pb2_grpc as pb_grpc
from users_svc.follower_lists import FollowerListKeeper
from users_svc.mailing import AccountEmail, TokenMailer
from users_svc.passwords import PasswordHashing, hashing_limit, memory_limit_bytes
from users_svc.service import User, Users
from users_svc.settings import UsersSettings
from users_svc.storage import (
    SESSION_REVOCATIONS,
    PostgresUserStore,
    RedisMailBudget,
    RedisSessionCache,
    UserCache,
    tidy_mail,
    write_revocation,
)

Context = grpc.aio.ServicerContext[Any, Any]
# users_svc's consumer group on events:accounts (social.erasure): a deleted account's follows,
# blocks and mutes.
ERASE_GROUP = "users-erase"
SERVICE = pb.DESCRIPTOR.services_by_name["UserService"]
MAIL_METRICS_SECONDS = 15.0

# Per account: by the handle or the email address it signs in with (two buckets for one account
# that has both).
LOGIN = (
    Limit("login", Scope.ADDRESS, "login_per_address"),
    Limit("login", Scope.FIELD, "login_per_account", field="handle"),
    Limit("login", Scope.FIELD, "login_per_account", field="email"),
)
# A reset token is a sign-in, whatever it is tried with.
RESET = (Limit("login", Scope.ADDRESS, "login_per_address"),)
# Asking for a reset mail: per address asked about and per client address; a 429 says nothing of
# whether an account has the address. The mails an account gets are bounded in the service.
RESET_REQUEST = (
    Limit("reset", Scope.ADDRESS, "reset_per_address"),
    Limit("reset", Scope.FIELD, "reset_per_email", field="email"),
)
# Proving a password again with a stolen token is a sign-in: the same per-account rate.
PASSWORD_CHANGE = (
    Limit("login", Scope.ADDRESS, "login_per_address"),
    Limit("login", Scope.USER, "login_per_account"),
)
SIGNUP = (Limit("signup", Scope.ADDRESS, "signup_per_address"),)
# Anyone holding a verification link may use it, signed in or not: per client address.
VERIFY = (Limit("write", Scope.ADDRESS, "write_per_address"),)
# Ending a session stays possible for someone who spent their write budget (a flood from a stolen
# token is exactly when its owner wants it gone); the address still bounds it.
LOGOUT = (Limit("write", Scope.ADDRESS, "write_per_address"),)
# Every public RPC (one with an HTTP route through Envoy) must be here, at the rates of
# UsersSettings.rate_limits; tests/unit/test_rate_limit_policies.py reads the descriptors and fails
# when one is missing.
RATE_LIMITS: Policies = {
    **{
        method_name(SERVICE, method): READ
        for method in ("GetUser", "GetUserByHandle", "ListFollowers", "ListFollowing", "SearchUsers")
    },
    # The caller's own lists: signed in, so per account too.
    **{
        method_name(SERVICE, method): READ_SIGNED_IN
        for method in ("ListBlocks", "ListMutes", "ListSuggestions")
    },
    method_name(SERVICE, "CreateUser"): SIGNUP,
    method_name(SERVICE, "Login"): LOGIN,
    method_name(SERVICE, "ChangePassword"): PASSWORD_CHANGE,
    method_name(SERVICE, "DeleteUser"): PASSWORD_CHANGE,
    method_name(SERVICE, "Logout"): LOGOUT,
    method_name(SERVICE, "VerifyEmail"): VERIFY,
    method_name(SERVICE, "SendVerificationEmail"): WRITE,
    method_name(SERVICE, "ChangeEmail"): PASSWORD_CHANGE,
    method_name(SERVICE, "RequestPasswordReset"): RESET_REQUEST,
    method_name(SERVICE, "ResetPassword"): RESET,
    method_name(SERVICE, "FollowUser"): WRITE,
    method_name(SERVICE, "UnfollowUser"): WRITE,
    method_name(SERVICE, "UpdateUser"): WRITE,
    method_name(SERVICE, "BlockUser"): WRITE,
    method_name(SERVICE, "UnblockUser"): WRITE,
    method_name(SERVICE, "MuteUser"): WRITE,
    method_name(SERVICE, "UnmuteUser"): WRITE,
}


def user_message(user: User, *, owner: bool = False) -> pb.User:
    """The wire user; its email address only for the account itself (`owner`), never to others."""
    message = pb.User(
        user_id=str(user.user_id),
        handle=user.handle,
        display_name=user.display_name,
        create_time=timestamp(user.create_time),
        followers_count=user.followers_count,
        following_count=user.following_count,
        tweets_count=user.tweets_count,
        bio=user.bio,
    )
    if owner and user.email is not None:
        message.email = user.email
        message.email_verified = user.email_verified
    return message


def relation_message(other_id: int, relation: Relation) -> pb.Relation:
    return pb.Relation(
        user_id=str(other_id),
        blocks=bool(relation & Relation.BLOCKS),
        blocked_by=bool(relation & Relation.BLOCKED_BY),
        mutes=bool(relation & Relation.MUTES),
    )


def cached_user(user: User) -> bytes:
    """A user as the cache keeps it: without tweets_count, which tweets_svc owns and caches."""
    return user_message(replace(user, tweets_count=0)).SerializeToString()


def account_deleted_event(user_id: int) -> bytes:
    return pb.AccountEvent(
        user_id=str(user_id), kind=pb.AccountEvent.KIND_DELETED, event_time=now_timestamp()
    ).SerializeToString()


def follow_event(follower_id: int, followee_id: int, following: bool, follow_id: int) -> bytes:
    return pb.FollowEvent(
        follower_id=str(follower_id),
        followee_id=str(followee_id),
        following=following,
        event_time=now_timestamp(),
        follow_id=str(follow_id),
    ).SerializeToString()


class UserServicer(pb_grpc.UserServiceServicer):
    def __init__(
        self,
        users: Users,
        account_email: AccountEmail,
        auth: Authenticator,
        follower_lists: FollowerListKeeper,
    ) -> None:
        self._users = users
        self._email = account_email
        self._auth = auth
        self._follower_lists = follower_lists

    async def CreateUser(self, request: pb.CreateUserRequest, context: Context) -> pb.CreateUserResponse:
        user = await self._users.create_user(
            request.handle, request.display_name, request.password, request.email
        )
        return pb.CreateUserResponse(user=user_message(user, owner=True))

    async def VerifyEmail(self, request: pb.VerifyEmailRequest, context: Context) -> pb.VerifyEmailResponse:
        await self._email.verify(await self._auth.viewer(context.invocation_metadata()), request.token)
        return pb.VerifyEmailResponse()

    async def SendVerificationEmail(
        self, request: pb.SendVerificationEmailRequest, context: Context
    ) -> pb.SendVerificationEmailResponse:
        actor = await self._auth.caller_id(context)
        await self._email.resend_verification(actor, require_id(request.user_id, "user_id"))
        return pb.SendVerificationEmailResponse()

    async def ChangeEmail(self, request: pb.ChangeEmailRequest, context: Context) -> pb.ChangeEmailResponse:
        actor = await self._auth.caller_id(context)
        user = await self._email.change(
            actor, require_id(request.user_id, "user_id"), request.email, request.password
        )
        return pb.ChangeEmailResponse(user=user_message(user, owner=True))

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> pb.RequestPasswordResetResponse:
        await self._email.request_reset(request.email)
        return pb.RequestPasswordResetResponse()

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: Context
    ) -> pb.ResetPasswordResponse:
        await self._email.reset(request.token, request.new_password)
        return pb.ResetPasswordResponse()

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        result = await self._users.login(request.handle, request.password, request.email)
        return pb.LoginResponse(
            token=result.token,
            user=user_message(result.user, owner=True),
            expire_time=timestamp(result.expire_time),
        )

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        await self._auth.caller(context)
        await self._users.logout(bearer_token(context.invocation_metadata()))
        return pb.LogoutResponse()

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Context
    ) -> pb.ChangePasswordResponse:
        actor = await self._auth.caller_id(context)
        result = await self._users.change_password(
            actor, require_id(request.user_id, "user_id"), request.old_password, request.new_password
        )
        return pb.ChangePasswordResponse(token=result.token, expire_time=timestamp(result.expire_time))

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Context) -> pb.DeleteUserResponse:
        actor = await self._auth.caller_id(context)
        await self._users.delete_account(actor, require_id(request.user_id, "user_id"), request.password)
        return pb.DeleteUserResponse()

    async def _viewer(self, context: Context) -> int | None:
        return await self._auth.viewer(context.invocation_metadata())

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        viewer = await self._viewer(context)
        user = await self._users.get_user(require_id(request.user_id, "user_id"))
        return pb.GetUserResponse(user=user_message(user, owner=user.user_id == viewer))

    async def GetUserByHandle(
        self, request: pb.GetUserByHandleRequest, context: Context
    ) -> pb.GetUserByHandleResponse:
        viewer = await self._viewer(context)
        user = await self._users.get_user_by_handle(request.handle)
        return pb.GetUserByHandleResponse(user=user_message(user, owner=user.user_id == viewer))

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Context) -> pb.UpdateUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.update_profile(
            actor,
            require_id(request.user_id, "user_id"),
            request.display_name if request.HasField("display_name") else None,
            request.bio if request.HasField("bio") else None,
        )
        return pb.UpdateUserResponse(user=user_message(user, owner=True))

    async def SearchUsers(self, request: pb.SearchUsersRequest, context: Context) -> pb.SearchUsersResponse:
        viewer = await self._viewer(context)
        page = await self._users.search(request.query, request.page_size, request.page_token, viewer)
        return pb.SearchUsersResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def ResolveHandles(
        self, request: pb.ResolveHandlesRequest, context: Context
    ) -> pb.ResolveHandlesResponse:
        users = await self._users.resolve_handles(list(request.handles))
        return pb.ResolveHandlesResponse(users=[user_message(u) for u in users])

    async def FilterFollowers(
        self, request: pb.FilterFollowersRequest, context: Context
    ) -> pb.FilterFollowersResponse:
        followers = await self._users.followers_among(
            require_id(request.user_id, "user_id"),
            [require_id(c, "candidate_ids") for c in request.candidate_ids],
        )
        return pb.FilterFollowersResponse(follower_ids=[str(f) for f in followers])

    async def FollowUser(self, request: pb.FollowUserRequest, context: Context) -> pb.FollowUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.follow(actor, require_id(request.user_id, "user_id"))
        return pb.FollowUserResponse(user=user_message(user))

    async def UnfollowUser(
        self, request: pb.UnfollowUserRequest, context: Context
    ) -> pb.UnfollowUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.unfollow(actor, require_id(request.user_id, "user_id"))
        return pb.UnfollowUserResponse(user=user_message(user))

    async def ListFollowers(
        self, request: pb.ListFollowersRequest, context: Context
    ) -> pb.ListFollowersResponse:
        page = await self._users.list_followers(
            require_id(request.user_id, "user_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListFollowersResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def ListFollowing(
        self, request: pb.ListFollowingRequest, context: Context
    ) -> pb.ListFollowingResponse:
        page = await self._users.list_following(
            require_id(request.user_id, "user_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListFollowingResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def BlockUser(self, request: pb.BlockUserRequest, context: Context) -> pb.BlockUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.block(actor, require_id(request.user_id, "user_id"))
        return pb.BlockUserResponse(user=user_message(user))

    async def UnblockUser(self, request: pb.UnblockUserRequest, context: Context) -> pb.UnblockUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.unblock(actor, require_id(request.user_id, "user_id"))
        return pb.UnblockUserResponse(user=user_message(user))

    async def MuteUser(self, request: pb.MuteUserRequest, context: Context) -> pb.MuteUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.mute(actor, require_id(request.user_id, "user_id"))
        return pb.MuteUserResponse(user=user_message(user))

    async def UnmuteUser(self, request: pb.UnmuteUserRequest, context: Context) -> pb.UnmuteUserResponse:
        actor = await self._auth.caller_id(context)
        user = await self._users.unmute(actor, require_id(request.user_id, "user_id"))
        return pb.UnmuteUserResponse(user=user_message(user))

    async def ListBlocks(self, request: pb.ListBlocksRequest, context: Context) -> pb.ListBlocksResponse:
        actor = await self._auth.caller_id(context)
        page = await self._users.list_blocks(actor, request.page_size, request.page_token)
        return pb.ListBlocksResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def ListMutes(self, request: pb.ListMutesRequest, context: Context) -> pb.ListMutesResponse:
        actor = await self._auth.caller_id(context)
        page = await self._users.list_mutes(actor, request.page_size, request.page_token)
        return pb.ListMutesResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def ListSuggestions(
        self, request: pb.ListSuggestionsRequest, context: Context
    ) -> pb.ListSuggestionsResponse:
        actor = await self._auth.caller_id(context)
        found = await self._users.suggestions(
            actor, require_id(request.user_id, "user_id"), request.page_size
        )
        return pb.ListSuggestionsResponse(
            suggestions=[
                pb.Suggestion(user=user_message(user), followed_by_count=followed_by)
                for user, followed_by in found
            ]
        )

    async def ListRelations(
        self, request: pb.ListRelationsRequest, context: Context
    ) -> pb.ListRelationsResponse:
        others = None if request.all else [require_id(o, "other_ids") for o in request.other_ids]
        relations = await self._users.relations_among(require_id(request.user_id, "user_id"), others)
        return pb.ListRelationsResponse(relations=[relation_message(o, r) for o, r in relations.items()])

    async def BatchGetUsers(
        self, request: pb.BatchGetUsersRequest, context: Context
    ) -> pb.BatchGetUsersResponse:
        ids = [require_id(u, "user_ids") for u in request.user_ids]
        paths = set(request.read_mask.paths)
        users = await self._users.batch_get(ids, with_tweet_counts=not paths or "tweets_count" in paths)
        return pb.BatchGetUsersResponse(users=[user_message(u) for u in users])

    async def AuthenticateToken(
        self, request: pb.AuthenticateTokenRequest, context: Context
    ) -> pb.AuthenticateTokenResponse:
        session = await self._auth.session([("authorization", f"Bearer {request.token}")])
        return pb.AuthenticateTokenResponse(
            user_id=str(session.user_id), expire_time=timestamp(session.expire_time)
        )

    async def AuthenticateTokens(
        self, request: pb.AuthenticateTokensRequest, context: Context
    ) -> pb.AuthenticateTokensResponse:
        found = await self._users.authenticate_many(list(request.tokens))
        return pb.AuthenticateTokensResponse(
            sessions=[
                pb.TokenSession(token=t, user_id=str(s.user_id), expire_time=timestamp(s.expire_time))
                for t, s in found.items()
            ]
        )

    async def ListFollowerIds(
        self, request: pb.ListFollowerIdsRequest, context: Context
    ) -> pb.ListFollowerIdsResponse:
        page = await self._users.follower_ids(
            require_id(request.user_id, "user_id"), request.page_size, request.page_token
        )
        return pb.ListFollowerIdsResponse(
            user_ids=[str(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def ListFollowingIds(
        self, request: pb.ListFollowingIdsRequest, context: Context
    ) -> pb.ListFollowingIdsResponse:
        page = await self._users.following_ids(
            require_id(request.user_id, "user_id"), request.page_size, request.page_token
        )
        return pb.ListFollowingIdsResponse(
            user_ids=[str(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def EnsureFollowerLists(
        self, request: pb.EnsureFollowerListsRequest, context: Context
    ) -> pb.EnsureFollowerListsResponse:
        await self._follower_lists.ensure([require_id(u, "user_ids") for u in request.user_ids])
        return pb.EnsureFollowerListsResponse()

    async def SyncFollow(self, request: pb.SyncFollowRequest, context: Context) -> pb.SyncFollowResponse:
        await self._follower_lists.sync(
            require_id(request.follower_id, "follower_id"), require_id(request.followee_id, "followee_id")
        )
        return pb.SyncFollowResponse()

    async def JoinFollowerLists(
        self, request: pb.JoinFollowerListsRequest, context: Context
    ) -> pb.JoinFollowerListsResponse:
        await self._follower_lists.join(require_id(request.user_id, "user_id"))
        return pb.JoinFollowerListsResponse()


async def setup(runtime: Runtime[UsersSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    pool = await runtime.postgres(settings.database_url, "users")
    reads = await runtime.reads(pool, settings.database_read_url, "users", settings.read_max_lag_seconds)
    redis = await runtime.redis()
    # Revocations of cached sessions ride the outbox too: written until Redis takes them.
    outbox = Outbox(pool, redis, settings.outbox_replicas, writes={SESSION_REVOCATIONS: write_revocation})
    runtime.background(outbox.sweep_forever(settings.outbox_sweep_seconds), "outbox-sweeper")
    mail_queue = PostgresMailQueue(pool)
    relay = MailRelay(
        mail_queue,
        SmtpSender(settings.mail.smtp),
        policy=RetryPolicy(first_delay=timedelta(seconds=settings.mail_retry_seconds)),
    )
    runtime.background(relay.run(), "mail-relay")
    runtime.background(tidy_mail(mail_queue, pool), "mail-tidy")
    if settings.metrics_port:
        runtime.background(
            metrics.refresh_every(MAIL_METRICS_SECONDS, mail_queue.export_backlog, "mail backlog"),
            "mail metrics",
        )
    mailer = TokenMailer(settings.mail, relay.wake)
    cache = UserCache(OwnerCache(redis, settings.cache_ttl_seconds), cached_user)
    store = PostgresUserStore(
        pool,
        outbox,
        follow_event,
        cache,
        account_deleted_event,
        timedelta(days=settings.deleted_handle_grace_days),
        reads=reads,
    )
    follower_lists = FollowerListKeeper(
        store, FollowerLists(redis, key_start(HOME_PREFIX), settings.follower_list_ttl_seconds)
    )
    sessions = RedisSessionCache(redis, settings.session_cache_seconds)
    users = Users(
        store=store,
        sessions=sessions,
        mailer=mailer,
        relations_cache=RelationsCache(redis),
        tweet_counts=TweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE)),
        hashing=PasswordHashing(
            PasswordHasher(
                memory_cost=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost, parallelism=1
            ),
            limit=settings.argon2_max_concurrent
            or hashing_limit(memory_limit_bytes(), settings.argon2_memory_kib),
            max_wait_seconds=settings.rpc_deadline_seconds,
        ),
        page_tokens=PageTokens(*settings.page_token_secrets),
        token_ttl=timedelta(seconds=settings.token_ttl_seconds),
        popular_seconds=settings.suggestions_popular_seconds,
    )
    account_email = AccountEmail(
        users, store, mailer, RedisMailBudget(redis, settings.rate_limits.mail_per_account)
    )
    eraser = account_eraser(
        redis, ERASE_GROUP, settings.erase_consumer, users.erase, settings.consumer_forget_ms
    )
    runtime.background(eraser.run(), f"erase accounts from {ACCOUNTS_STREAM}")
    auth = Authenticator(redis, users.authenticate_many)
    runtime.limit_rates(redis, auth, settings.rate_limits, settings.trusted_proxies)
    pb_grpc.add_UserServiceServicer_to_server(
        UserServicer(users, account_email, auth, follower_lists), server
    )
    return [SERVICE.full_name]


__all__ = ["setup"]
