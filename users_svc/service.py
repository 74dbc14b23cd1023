"""The rules of users_svc: accounts, passwords, sessions and follows, on plain dataclasses."""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from argon2.exceptions import InvalidHashError, VerificationError

from mail import EmailAddress, InvalidEmailAddress, OutgoingMail, TokenRecord, parse_email_address
from meshkit.auth import Session, new_token, token_digest
from meshkit.errors import (
    DEPENDENCY_ERRORS,
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    not_found,
)
from meshkit.pagination import Page, PageTokens, page_size
from social import Relation, Relations, has_visible_character, interaction_refused, is_hidden
from users_svc.passwords import PasswordHashing
from users_svc.suggestions import (
    FAN_IN,
    FOLLOWING_SAMPLE,
    POPULAR_SECONDS,
    Candidate,
    PopularAccounts,
    fill_with_popular,
)

# The contract (protos/tweetmesh/users/v1) holds requests to their rules; these are the ones the
# service applies itself: handles that can exist (sign-in and mentions look up no other), and
# the stored bio.
HANDLE_PATTERN = re.compile(r"[A-Za-z0-9_]{1,15}")
BIO_MAX = 160
ID_PAGE_DEFAULT = 1000
ID_PAGE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    handle: str
    display_name: str
    create_time: datetime
    followers_count: int
    following_count: int
    tweets_count: int = 0
    bio: str = ""
    # Shown to the account itself only (server.user_message).
    email: str | None = None
    email_verified: bool = False


@dataclass(frozen=True, slots=True)
class Credentials:
    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    user: User
    expire_time: datetime


@dataclass(frozen=True, slots=True)
class TokenMail:
    """A token to store and the mail that carries it: queued together, in one transaction."""

    record: TokenRecord
    mail: OutgoingMail


# Composes the token and mail for an account once its row is read (or made) in the transaction.
ComposeMail = Callable[[User], TokenMail]


@dataclass(frozen=True, slots=True)
class NewAddress:
    """An address given to an account, unverified, and the verification mail it is sent."""

    email: EmailAddress
    compose: ComposeMail


class HandleTaken(Exception):
    pass


class Blocked(Exception):
    """Two accounts cannot interact: `relation` is the actor's with the other."""

    def __init__(self, relation: Relation) -> None:
        super().__init__(relation)
        self.relation = relation


class EmailTaken(Exception):
    pass


class UserStore(Protocol):
    async def insert_user(
        self, handle: str, display_name: str, password_hash: str, address: NewAddress | None = None
    ) -> User:
        """HandleTaken, or EmailTaken for the new address; its verification mail is queued in the
        same transaction."""
        ...

    async def credentials(self, handle: str) -> Credentials | None: ...
    async def credentials_by_email(self, email_key: str) -> Credentials | None:
        """The account whose *verified* address has this key."""
        ...

    async def users_by_id(self, user_ids: Sequence[int]) -> dict[int, User]: ...
    async def user_by_handle(self, handle: str) -> User | None: ...
    async def create_session(self, digest: bytes, user_id: int, expire_time: datetime) -> None: ...
    async def sessions(self, digests: Sequence[bytes]) -> dict[bytes, Session]:
        """The sessions stored under these token digests (expired ones too), by digest."""
        ...

    async def delete_session(self, digest: bytes) -> None: ...
    async def replace_password(self, user_id: int, password_hash: str) -> list[bytes]:
        """Stores the new hash and deletes every session of the user, together; returns their digests."""
        ...

    async def follow(self, follower_id: int, followee_id: int) -> None:
        """Blocked when either blocks the other."""
        ...

    async def unfollow(self, follower_id: int, followee_id: int) -> None: ...
    async def block(self, blocker_id: int, blocked_id: int) -> None:
        """The block, and the follows between the two ended, in one transaction."""
        ...

    async def unblock(self, blocker_id: int, blocked_id: int) -> None: ...
    async def mute(self, muter_id: int, muted_id: int) -> None: ...
    async def unmute(self, muter_id: int, muted_id: int) -> None: ...
    async def blocked(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]: ...
    async def muted(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]: ...
    async def relations_of(self, user_id: int) -> tuple[int, dict[int, Relation]]:
        """The user's relations version, and every relation it has with another account."""
        ...

    async def relations_version(self, user_id: int) -> int: ...
    async def delete_account(self, user_id: int) -> list[bytes]:
        """Marks the account deleted, revokes its sessions (their digests) and records its event."""
        ...

    async def is_deleted(self, user_id: int) -> bool: ...
    async def erase_graph(self, user_id: int) -> set[int]:
        """Ends a deleted account's follows, blocks and mutes; the accounts whose relations changed."""
        ...

    async def update_profile(
        self, user_id: int, display_name: str | None, bio: str | None
    ) -> tuple[str, str] | None:
        """Sets the fields given; the display name and bio as this update left them (None: no
        such user)."""
        ...

    async def search(
        self, prefix: str, after: tuple[bool, str, int] | None, limit: int
    ) -> list[tuple[bool, str, int]]:
        """(by_name, sort key, user id) of users whose handle, then display name, starts with
        prefix (lowercase), in that order, after the `after` row."""
        ...

    async def users_by_handles(self, handles: Sequence[str]) -> list[User]: ...
    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]: ...
    async def followers(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]: ...
    async def following(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]: ...
    async def friends_of_friends(
        self, user_id: int, sample: int, fan_in: int, excluded: Sequence[int], limit: int
    ) -> list[Candidate]: ...
    async def most_followed(self, limit: int) -> list[int]: ...
    async def followed_among(self, user_id: int, candidates: Sequence[int]) -> set[int]: ...


class SessionCache(Protocol):
    async def remember(self, token: str, session: Session) -> None: ...
    async def refill(self, sessions: Mapping[str, Session]) -> None:
        """remember each (token -> session), in one write, never failing: the cache may be down."""
        ...


class RelationsWriter(Protocol):
    """users_svc's side of the relations cache (social.relations.RelationsCache)."""

    async def read(self, viewer: int, others: Sequence[int]) -> dict[int, Relation] | None: ...
    async def read_all(self, viewer: int) -> dict[int, Relation] | None: ...
    async def write(self, viewer: int, version: int, relations: Mapping[int, Relation]) -> None: ...
    async def forget(self, user_ids: Iterable[int]) -> None: ...


class Mailer(Protocol):
    """Composes the mails accounts are sent and has them sent once queued (users_svc.mailing)."""

    def verification(self, email: EmailAddress) -> ComposeMail: ...
    def queued(self) -> None:
        """A mail was committed to the outbox: send it now rather than at the next poll."""
        ...


class TweetCounts(Protocol):
    """tweets_svc owns how many tweets each user posted."""

    async def tweet_counts(self, user_ids: Sequence[int]) -> dict[int, int]: ...


def is_handle(text: str) -> bool:
    """1 to 15 letters, digits or underscores, and nothing else (a full match: no trailing newline)."""
    return HANDLE_PATTERN.fullmatch(text) is not None


def email_address(text: str, field: str = "email") -> EmailAddress:
    """The valid address in `text`, or INVALID_ARGUMENT on `field` saying why not."""
    try:
        return parse_email_address(text)
    except InvalidEmailAddress as error:
        raise InvalidArgument.field(field, error.reason, reason="INVALID_EMAIL") from None


def email_taken() -> AlreadyExists:
    return AlreadyExists(
        message="email: this address belongs to another account",
        reason="EMAIL_TAKEN",
        metadata={"field": "email"},
    )


def require_owner(actor_id: int, user_id: int, action: str) -> None:
    """PERMISSION_DENIED unless the caller acts on its own account; `action` says what it may do."""
    if actor_id != user_id:
        raise PermissionDenied(
            f"user_id: a token may only {action}", reason="NOT_OWNER", metadata={"field": "user_id"}
        )


def validate_display_name(display_name: str) -> str:
    """The display name as stored (trimmed). The contract holds its length and characters; one of
    only invisible characters (joiners, marks: social.text says which count) is refused here."""
    name = display_name.strip()
    if not has_visible_character(name):
        raise InvalidArgument.field("display_name", "must contain a visible character", "TEXT_INVISIBLE")
    return name


def validate_bio(bio: str) -> str:
    """The bio as stored: NFC, trimmed. The contract (the protos) holds what is sent to BIO_MAX code
    points without control characters but newlines; NFC lengthens a text in rare cases, and the
    stored form is held to BIO_MAX too."""
    bio = unicodedata.normalize("NFC", bio).strip()
    if len(bio) > BIO_MAX:
        raise InvalidArgument.field("bio", f"must be at most {BIO_MAX} characters, got {len(bio)}")
    return bio


def search_prefix(query: str) -> str:
    """What a user search looks for: NFC, trimmed, lowercased, without a leading @ (a query of only
    "@" looks for "@")."""
    prefix = unicodedata.normalize("NFC", query).strip()
    return (prefix.removeprefix("@") or prefix).lower()


class Users:
    def __init__(
        self,
        *,
        store: UserStore,
        sessions: SessionCache,
        tweet_counts: TweetCounts,
        hashing: PasswordHashing,
        page_tokens: PageTokens,
        token_ttl: timedelta,
        mailer: Mailer,
        relations_cache: RelationsWriter,
        popular_seconds: float = POPULAR_SECONDS,
    ) -> None:
        self._mailer = mailer
        self._relations_cache = relations_cache
        self._relations = Relations(relations_cache, self.relations_among)
        self._popular = PopularAccounts(self._most_followed, seconds=popular_seconds)
        self._store = store
        self._sessions = sessions
        self._tweet_counts = tweet_counts
        self._hashing = hashing
        self._pages = page_tokens
        self._token_ttl = token_ttl
        # Verified against when the handle is unknown, so a miss costs as much as a wrong password.
        self._dummy_hash = hashing.hasher.hash("not a real password")

    async def create_user(self, handle: str, display_name: str, password: str, email: str = "") -> User:
        """A new account; with an email, unverified, and a verification mail on its way."""
        display_name = validate_display_name(display_name) if display_name.strip() else handle
        address = None
        if email.strip():
            valid = email_address(email)
            address = NewAddress(valid, self._mailer.verification(valid))
        password_hash = await self.hash_password(password)
        try:
            user = await self._store.insert_user(handle, display_name, password_hash, address)
        except HandleTaken:
            raise AlreadyExists(
                message=f"handle: {handle!r} is already taken",
                reason="HANDLE_TAKEN",
                metadata={"field": "handle", "handle": handle},
            ) from None
        except EmailTaken:
            raise email_taken() from None
        if address is not None:
            self._mailer.queued()
        return user

    async def login(self, handle: str, password: str, email: str = "") -> LoginResult:
        """A session for the account of a handle, or of a verified email address, and its password
        (the contract asks for exactly one of the two)."""
        if email:
            found = await self._store.credentials_by_email(email_address(email).key)
        else:
            found = await self._store.credentials(handle) if is_handle(handle) else None
        verified = await self._verify(found.password_hash if found else None, password)
        if found is None or not verified:
            said = "email" if email else "handle"
            raise Unauthenticated(f"{said} or password is wrong", reason="BAD_CREDENTIALS")
        return await self._new_session(found.user)

    async def _new_session(self, user: User) -> LoginResult:
        token = new_token()
        expire_time = datetime.now(UTC) + self._token_ttl
        await self._store.create_session(token_digest(token), user.user_id, expire_time)
        await self._sessions.remember(token, Session(user.user_id, expire_time))
        (counted,) = await self._with_tweet_counts([user])
        return LoginResult(token, counted, expire_time)

    async def change_password(
        self, actor_id: int, user_id: int, old_password: str, new_password: str
    ) -> LoginResult:
        """Replaces the password and revokes every session (a stolen token dies with the old
        password), then opens a fresh session for the caller."""
        require_owner(actor_id, user_id, "change its own user's password")
        found = await self.check_password(user_id, old_password, "old_password")
        password_hash = await self.hash_password(new_password)
        await self._store.replace_password(user_id, password_hash)
        return await self._new_session(found.user)

    async def check_password(self, user_id: int, password: str, field: str) -> Credentials:
        """The account's credentials if `password` is its password, else INVALID_ARGUMENT on `field`."""
        user = await self.get_user(user_id)
        found = await self._store.credentials(user.handle)
        verified = await self._verify(found.password_hash if found else None, password)
        if found is None or not verified:
            raise InvalidArgument.field(field, "does not match the current password", "BAD_PASSWORD")
        return found

    async def hash_password(self, password: str) -> str:
        return await self._hashing.hash(password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; an unknown handle (no hash) costs as much and is false."""

        def verify(candidate: str) -> bool:
            try:
                return self._hashing.hasher.verify(password_hash or self._dummy_hash, candidate)
            except (VerificationError, InvalidHashError):
                return False

        return await self._hashing.run(verify, password) and password_hash is not None

    async def delete_account(self, actor_id: int, user_id: int, password: str) -> None:
        """Deletes the caller's own account once its password is proved (DeleteUser): hidden at
        once, sessions revoked (their cache entries too), the rest erased through its event."""
        require_owner(actor_id, user_id, "delete its own account")
        await self.check_password(user_id, password, "password")
        await self._store.delete_account(user_id)
        await self._relations_cache.forget([user_id])

    async def erase(self, user_id: int) -> None:
        """A deleted account's part in users_svc (on its AccountEvent, at least once): its follows
        both ways, blocks and mutes, and the cached relations of those it had any with."""
        if not await self._store.is_deleted(user_id):
            return  # never erase a live account, whatever an event says
        changed = await self._store.erase_graph(user_id)
        await self._relations_cache.forget([user_id, *changed])

    async def logout(self, token: str) -> None:
        await self._store.delete_session(token_digest(token))

    async def authenticate_many(self, tokens: Sequence[str]) -> dict[str, Session]:
        """The live sessions behind tokens (and the shared cache refilled for them); tokens with
        none are left out. One read of PostgreSQL for all, one write of the cache."""
        digests = {token_digest(t): t for t in dict.fromkeys(tokens)}
        now = datetime.now(UTC)
        found = {
            digests[d]: s
            for d, s in (await self._store.sessions(list(digests))).items()
            if s.expire_time > now
        }
        if not found:
            return {}
        # Where no entry is (NX): a revocation since the read above left its tombstone (meshkit.auth).
        await self._sessions.refill(found)
        return found

    async def get_user(self, user_id: int, field: str = "user_id") -> User:
        found = (await self._store.users_by_id([user_id])).get(user_id)
        if found is None:
            raise not_found("user", str(user_id), field)
        (user,) = await self._with_tweet_counts([found])
        return user

    async def get_user_by_handle(self, handle: str) -> User:
        found = await self._store.user_by_handle(handle) if is_handle(handle) else None
        if found is None:
            raise not_found("user", handle, "handle")
        (user,) = await self._with_tweet_counts([found])
        return user

    async def batch_get(self, user_ids: Sequence[int], with_tweet_counts: bool) -> list[User]:
        found = await self._store.users_by_id(user_ids)
        users = [found[u] for u in dict.fromkeys(user_ids) if u in found]
        return await self._with_tweet_counts(users) if with_tweet_counts else users

    async def _with_tweet_counts(self, users: list[User]) -> list[User]:
        if not users:
            return users
        counts = await self._tweet_counts.tweet_counts([u.user_id for u in users])
        return [replace(u, tweets_count=counts.get(u.user_id, 0)) for u in users]

    async def update_profile(
        self, actor_id: int, user_id: int, display_name: str | None, bio: str | None
    ) -> User:
        if actor_id != user_id:
            await self._require_user(user_id)
        require_owner(actor_id, user_id, "change its own profile")
        if display_name is not None:
            display_name = validate_display_name(display_name)
        if bio is not None:
            bio = validate_bio(bio)
        written = await self._store.update_profile(user_id, display_name, bio)
        user = await self.get_user(user_id)
        # The profile as this update wrote it, even when another update has committed since.
        return user if written is None else replace(user, display_name=written[0], bio=written[1])

    async def search(self, query: str, size: int, token: str, viewer: int | None = None) -> Page[User]:
        prefix = search_prefix(query)
        limit = page_size(size)
        scope = f"user-search:{prefix}"
        cursor = self._pages.decode(token, scope)
        after = None
        if cursor:
            by_name, key, user_id = json.loads(cursor)
            after = (bool(by_name), str(key), int(user_id))
        rows = await self._store.search(prefix, after, limit + 1)
        page = self._pages.page(rows, limit, scope, lambda row: json.dumps(list(row)))
        return Page(await self._shown([u for _, _, u in page.items], viewer), page.next_page_token)

    async def resolve_handles(self, handles: Sequence[str]) -> list[User]:
        valid = [h for h in handles if is_handle(h)]
        return await self._store.users_by_handles(valid) if valid else []

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        return await self._store.followers_among(user_id, candidates) if candidates else []

    async def follow(self, actor_id: int, user_id: int) -> User:
        if actor_id == user_id:
            raise InvalidArgument.field("user_id", "you cannot follow yourself", reason="SELF_FOLLOW")
        await self._require_user(user_id)
        try:
            await self._store.follow(actor_id, user_id)
        except Blocked as blocked:
            refused = interaction_refused(blocked.relation, "follow")
            assert refused is not None
            raise refused from None
        return await self.get_user(user_id)

    async def unfollow(self, actor_id: int, user_id: int) -> User:
        if actor_id == user_id:
            raise InvalidArgument.field("user_id", "you cannot unfollow yourself", reason="SELF_FOLLOW")
        await self._require_user(user_id)
        await self._store.unfollow(actor_id, user_id)
        return await self.get_user(user_id)

    async def suggestions(self, actor_id: int, user_id: int, size: int) -> list[tuple[User, int]]:
        """Who the actor might follow, best first, with how many of the accounts it follows follow
        each (users_svc.suggestions says how, and what it never suggests)."""
        if actor_id != user_id:
            await self._require_user(user_id)
        require_owner(actor_id, user_id, "see its own suggestions")
        limit = page_size(size)
        # Any relation (a block either way, a mute) keeps an account out.
        related = await self._relations.all(actor_id)
        ranked = await self._store.friends_of_friends(
            actor_id, FOLLOWING_SAMPLE, FAN_IN, sorted(related), limit
        )
        chosen: list[Candidate] = ranked
        if len(ranked) < limit:
            popular = [p for p in await self._popular.get() if p != actor_id and p not in related]
            followed = await self._store.followed_among(actor_id, popular)
            chosen = fill_with_popular(ranked, popular, followed, limit)
        found = await self._store.users_by_id([c.user_id for c in chosen])
        users = await self._with_tweet_counts([found[c.user_id] for c in chosen if c.user_id in found])
        followed_by = {c.user_id: c.followed_by for c in chosen}
        return [(user, followed_by[user.user_id]) for user in users]

    async def _most_followed(self, size: int) -> list[int]:
        return await self._store.most_followed(size)

    async def _require_user(self, user_id: int) -> None:
        if user_id not in await self._store.users_by_id([user_id]):
            raise not_found("user", str(user_id), "user_id")

    async def list_followers(
        self, user_id: int, size: int, token: str, viewer: int | None = None
    ) -> Page[User]:
        return await self._list_users("followers", user_id, size, token, viewer)

    async def list_following(
        self, user_id: int, size: int, token: str, viewer: int | None = None
    ) -> Page[User]:
        return await self._list_users("following", user_id, size, token, viewer)

    async def _list_users(
        self, direction: str, user_id: int, size: int, token: str, viewer: int | None
    ) -> Page[User]:
        limit = page_size(size)
        await self._require_user(user_id)
        page = await self._edge_page(direction, user_id, limit, token)
        return Page(await self._shown(page.items, viewer), page.next_page_token)

    async def _shown(self, user_ids: Sequence[int], viewer: int | None) -> list[User]:
        """The users of a list page, with their tweet counts, but for those a signed-in viewer
        must not see (either blocks the other); the cursor has moved past them anyway."""
        relations = await self._relations.among(viewer, user_ids)
        found = await self._store.users_by_id(user_ids)
        return await self._with_tweet_counts(
            [found[u] for u in user_ids if u in found and not is_hidden(relations, [u], muting=False)]
        )

    # -- blocks and mutes ------------------------------------------------------------------------

    async def block(self, actor_id: int, user_id: int) -> User:
        return await self._relate(self._store.block, "block", actor_id, user_id)

    async def unblock(self, actor_id: int, user_id: int) -> User:
        return await self._relate(self._store.unblock, "unblock", actor_id, user_id)

    async def mute(self, actor_id: int, user_id: int) -> User:
        return await self._relate(self._store.mute, "mute", actor_id, user_id)

    async def unmute(self, actor_id: int, user_id: int) -> User:
        return await self._relate(self._store.unmute, "unmute", actor_id, user_id)

    async def _relate(
        self, change: Callable[[int, int], Awaitable[None]], verb: str, actor_id: int, user_id: int
    ) -> User:
        """Changes a relation (idempotent), then forgets the cached relations of both accounts at
        once: the change holds everywhere from the answer on. If Redis cannot be told, the answer
        is UNAVAILABLE and a retry (which changes nothing more) tells it again; the cache's
        lifetime bounds how long a lost one can matter."""
        if actor_id == user_id:
            raise InvalidArgument.field(
                "user_id", f"you cannot {verb} yourself", reason=f"SELF_{verb.upper()}"
            )
        await self._require_user(user_id)
        await change(actor_id, user_id)
        await self._relations_cache.forget([actor_id, user_id])
        return await self.get_user(user_id)

    async def list_blocks(self, actor_id: int, size: int, token: str) -> Page[User]:
        return await self._relation_page("blocks", self._store.blocked, actor_id, size, token)

    async def list_mutes(self, actor_id: int, size: int, token: str) -> Page[User]:
        return await self._relation_page("mutes", self._store.muted, actor_id, size, token)

    async def _relation_page(
        self,
        kind: str,
        fetch: Callable[[int, int | None, int], Awaitable[list[tuple[int, int]]]],
        actor_id: int,
        size: int,
        token: str,
    ) -> Page[User]:
        limit = page_size(size)
        scope = f"{kind}:{actor_id}"
        cursor = self._pages.decode(token, scope)
        rows = await fetch(actor_id, int(cursor) if cursor else None, limit + 1)
        page = self._pages.page(rows, limit, scope, lambda row: row[0])
        found = await self._store.users_by_id([other for _, other in page.items])
        users = await self._with_tweet_counts([found[o] for _, o in page.items if o in found])
        return Page(users, page.next_page_token)

    async def relations_among(self, viewer: int, others: Sequence[int] | None) -> dict[int, Relation]:
        """The viewer's relations with `others` (None: all of them), from PostgreSQL; the viewer's
        cache entry is written again on the way (and dropped if a change committed meanwhile)."""
        version, relations = await self._store.relations_of(viewer)
        with contextlib.suppress(*DEPENDENCY_ERRORS):  # a cache: the answer stands without it
            await self._relations_cache.write(viewer, version, relations)
            if await self._store.relations_version(viewer) != version:
                await self._relations_cache.forget([viewer])
        return relations if others is None else {o: relations[o] for o in others if o in relations}

    async def follower_ids(self, user_id: int, size: int, token: str) -> Page[int]:
        return await self._edge_page(
            "followers", user_id, page_size(size, default=ID_PAGE_DEFAULT, maximum=ID_PAGE_MAX), token
        )

    async def following_ids(self, user_id: int, size: int, token: str) -> Page[int]:
        return await self._edge_page(
            "following", user_id, page_size(size, default=ID_PAGE_DEFAULT, maximum=ID_PAGE_MAX), token
        )

    async def _edge_page(self, direction: str, user_id: int, limit: int, token: str) -> Page[int]:
        scope = f"{direction}:{user_id}"
        cursor = self._pages.decode(token, scope)
        before = int(cursor) if cursor else None
        fetch = self._store.followers if direction == "followers" else self._store.following
        page = self._pages.page(await fetch(user_id, before, limit + 1), limit, scope, lambda row: row[0])
        return Page([other for _, other in page.items], page.next_page_token)
