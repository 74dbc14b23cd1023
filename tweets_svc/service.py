"""The rules of tweets_svc: valid tweets, mentions, hashtags and media, quotes, idempotent
creation, edits by the author within limits, deletes by the author only, retweets, likes, and every
tweet list, on plain dataclasses."""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from meshkit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, not_found
from meshkit.pagination import Page, PageTokens, page_size
from social import (
    MediaFacts,
    Relation,
    TweetRef,
    has_visible_character,
    interaction_refused,
    is_hidden,
    is_public,
)

# The contract (protos/tweetmesh/tweets/v1) holds requests to their rules; these are the ones the
# service applies itself, to what it stores.
TEXT_MAX = 280
TAG_MAX = 100
# What one read of a deleted account's tweets, likes or bookmarks takes (social.erasure).
ERASE_BATCH = 100
ALT_TEXT_MAX = 1000
# A conversation shows at most this many tweets above the one asked for (the first shown names its
# parent, whose conversation goes on up), and replies this many levels below (by default 8).
ANCESTORS_MAX = 100
REPLY_DEPTH_DEFAULT = 8
REPLY_DEPTH_MAX = 32
_ALLOWED_CONTROLS = {"\n", "\t", "\r"}
# @handle and #tag as Twitter reads them: not glued to a preceding word character.
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{1,15})(?![A-Za-z0-9_@])")
_HASHTAG = re.compile(r"(?<![\w#&])#(\w+)")


@dataclass(frozen=True, slots=True)
class Mention:
    user_id: int
    handle: str


@dataclass(frozen=True, slots=True)
class TweetMedia:
    """An image or video a tweet shows: media_svc's facts of it as attached, and its alt text."""

    media_id: int
    content_type: str
    width: int
    height: int
    duration_ms: int
    url: str
    thumbnail_url: str
    alt_text: str = ""


@dataclass(frozen=True, slots=True)
class Tweet:
    tweet_id: int
    author_id: int
    text: str
    create_time: datetime
    reply_to_tweet_id: int | None
    reply_count: int
    reply_to_author_id: int | None = None
    reply_to_deleted: bool = False
    retweet_of_tweet_id: int | None = None
    like_count: int = 0
    retweet_count: int = 0
    mentions: tuple[Mention, ...] = ()
    hashtags: tuple[str, ...] = ()
    media: tuple[TweetMedia, ...] = ()
    # For a retweet, the original it shows.
    retweeted: Tweet | None = None
    # For a quote: the quoted tweet's id, and the tweet when it is live and was read with this one
    # (one level: a quoted tweet's own quote is not read).
    quote_of_tweet_id: int | None = None
    quoted: Tweet | None = None
    quoted_deleted: bool = False
    quote_count: int = 0
    # How many times it was edited, and when last (None: never).
    edit_count: int = 0
    edit_time: datetime | None = None
    # The author's tweet count, when it was read with the tweet (None: ask for it).
    author_tweets_count: int | None = None
    # The versions of the tweet's row and of its author's count as read (social.caches).
    version: int = 0
    author_tweets_count_version: int = 0

    @property
    def public(self) -> bool:
        """Whether it is on the global timeline (social.rules.is_public)."""
        return is_public(self)


@dataclass(frozen=True, slots=True)
class NewTweet:
    author_id: int
    text: str
    reply_to_tweet_id: int | None
    request_id: str | None
    mentions: tuple[Mention, ...] = ()
    hashtags: tuple[str, ...] = ()
    media: tuple[TweetMedia, ...] = ()
    quote_of_tweet_id: int | None = None


@dataclass(frozen=True, slots=True)
class LikeChange:
    """A like made or undone (it becomes a LikeEvent); `like_id` orders the changes of one pair."""

    tweet_id: int
    user_id: int
    author_id: int
    like_id: int
    liked: bool


@dataclass(frozen=True, slots=True)
class TweetEdit:
    """A tweet's next version, checked: its text and what the text names, and its media (None:
    the current ones stay). `attached` are the media the edit adds (claimed for it)."""

    tweet_id: int
    author_id: int
    text: str
    mentions: tuple[Mention, ...]
    hashtags: tuple[str, ...]
    media: tuple[TweetMedia, ...] | None
    attached: tuple[int, ...]
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Editable:
    """What decides whether a live tweet may be edited now: its author, whether it is a retweet,
    how long ago it was posted and how many times it was edited."""

    author_id: int
    retweet: bool
    age_seconds: float
    edit_count: int


@dataclass(frozen=True, slots=True)
class EditLimits:
    """How long after posting a tweet may be edited, and how many times."""

    window_seconds: float = 1800.0
    max_edits: int = 5


@dataclass(frozen=True, slots=True)
class TweetVersion:
    """What a tweet showed from `time` on (its posting, or the edit that wrote it)."""

    text: str
    media: tuple[TweetMedia, ...]
    time: datetime


@dataclass(frozen=True, slots=True)
class TweetChange:
    """What fan-out, media_svc and trends need to know of a created, edited or deleted tweet (it
    becomes a TweetEvent)."""

    tweet: Tweet
    deleted: bool
    # Who gets it whatever they follow: the mentioned users and the replied-to author.
    mentioned_user_ids: tuple[int, ...] = ()
    # Deleted: every media the tweet held (media_svc deletes them); created: tweet.media's; edited:
    # the media the edit attached.
    media_ids: tuple[int, ...] = ()
    edited: bool = False
    # Edited: the hashtags the tweet had before, and who was mentioned before.
    previous_hashtags: tuple[str, ...] = ()
    previous_mentioned_user_ids: tuple[int, ...] = ()


class ReplyTargetMissing(Exception):
    pass


class QuoteTargetMissing(Exception):
    pass


class MediaTaken(Exception):
    """A media is attached to another tweet (two posts raced for it)."""

    def __init__(self, media_id: int) -> None:
        super().__init__(media_id)
        self.media_id = media_id


class TweetStore(Protocol):
    """Every write also stores its TweetEvent(s) in the same transaction (the outbox)."""

    async def create(self, new: NewTweet) -> Tweet:
        """An existing (author, request_id) returns the tweet stored the first time.
        ReplyTargetMissing / QuoteTargetMissing if the replied-to / quoted tweet is absent or
        deleted; MediaTaken if a media is attached to another tweet."""
        ...

    async def editable(self, tweet_id: int) -> Editable | None:
        """What decides whether the tweet may be edited; None if it is absent or deleted."""
        ...

    async def edited_with(self, tweet_id: int, request_id: str) -> bool:
        """Whether an edit of the tweet with this request_id was made."""
        ...

    async def edit(self, edit: TweetEdit, allowed: Callable[[Editable], None]) -> Tweet:
        """Applies the edit to the live tweet, locked, once `allowed` (which raises a refusal) let
        it; the version it replaces is kept. NotFound if the tweet is absent or deleted; a retry
        (the same request_id) returns the tweet as it is; MediaTaken if a media is another
        tweet's."""
        ...

    async def history(self, tweet_id: int) -> list[TweetVersion]:
        """The live tweet's versions, newest (the current one) first; [] if absent or deleted."""
        ...

    async def by_request_id(self, author_id: int, request_id: str) -> Tweet | None:
        """The live tweet author_id created with request_id; NotFound (DELETED) if it was deleted."""
        ...

    async def media_tweets(self, media_ids: Sequence[int]) -> dict[int, int]:
        """media id -> the tweet holding it."""
        ...

    async def delete(self, tweet_id: int, actor_id: int) -> None:
        """Deletes a live tweet of actor_id and its retweets. NotFound / PermissionDenied."""
        ...

    async def retweet(self, original_id: int, actor_id: int) -> int:
        """The id of actor_id's live retweet of original_id, created if there is none."""
        ...

    async def retweet_of(self, original_id: int, actor_id: int) -> int | None: ...
    async def like(self, tweet_id: int, user_id: int) -> bool:
        """Whether the tweet is live (and now liked)."""
        ...

    async def unlike(self, tweet_id: int, user_id: int) -> bool: ...
    async def bookmark(self, tweet_id: int, user_id: int) -> bool:
        """Whether the tweet is live (and now bookmarked)."""
        ...

    async def unbookmark(self, tweet_id: int, user_id: int) -> None: ...
    async def bookmarked(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        """(bookmark id, tweet id) below `before`, most recent first."""
        ...

    async def state(self, tweet_id: int) -> TweetState | None: ...
    async def by_ids(self, tweet_ids: Sequence[int]) -> dict[int, Tweet]:
        """Live tweets only; a retweet whose original is gone is gone too."""
        ...

    async def by_author(
        self, author_id: int, before: int | None, limit: int, *, lag_ok: bool = False
    ) -> list[int]:
        """The author's live tweets below `before`, newest first; `lag_ok`: a moment-old state will do
        (a read replica may answer)."""
        ...

    async def replies(self, tweet_id: int, after: int | None, limit: int) -> list[int]: ...
    async def quotes(self, tweet_id: int, before: int | None, limit: int) -> list[int]: ...
    async def thread_up(self, tweet_id: int, limit: int) -> list[ThreadNode]:
        """The tweet (depth 0) and up to limit - 1 tweets it replies to, nearest first, deleted ones
        too; [] if it was never stored."""
        ...

    async def thread_down(
        self, tweet_id: int, author_id: int, max_depth: int, after: tuple[int, ...], limit: int
    ) -> list[ThreadNode]:
        """The replies below tweet_id up to max_depth levels, in reading order (each followed by
        its own replies; among siblings author_id's first, then oldest first), those whose path
        comes after `after`. A deleted reply is kept only where it has replies."""
        ...

    async def liking_users(self, tweet_id: int, before: int | None, limit: int) -> list[tuple[int, int]]: ...
    async def liked_tweets(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]: ...
    async def mentioning(
        self, user_id: int, before: int | None, after: int | None, limit: int
    ) -> list[int]: ...
    async def tagged(self, tag: str, before: int | None, limit: int) -> list[int]: ...
    async def public(self, before: int | None, after: int | None, limit: int) -> list[int]: ...
    async def searchable(self, query: str) -> bool:
        """Whether the query has any word the full-text search can use."""
        ...

    async def search(
        self, query: str, after: tuple[float, int] | None, limit: int
    ) -> list[tuple[float, int]]:
        """(rank, id) of the best matches below `after` in (rank desc, id desc) order."""
        ...

    async def ids_by_authors(
        self, author_ids: Sequence[int], before: int | None, after: int | None, limit: int
    ) -> list[TweetRef]: ...
    async def tweet_counts(self, author_ids: Sequence[int]) -> dict[int, int]: ...


@dataclass(frozen=True, slots=True)
class TweetState:
    """Whether a tweet id was ever stored, and if it still is live."""

    author_id: int
    deleted: bool
    retweet_of_tweet_id: int | None


@dataclass(frozen=True, slots=True)
class ThreadNode:
    """A tweet's place in a conversation: its parent, its depth below the tweet asked for (negative
    above it), whether it was deleted, and (below) its position in reading order."""

    tweet_id: int
    author_id: int
    parent_id: int | None
    depth: int
    deleted: bool
    path: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Conversation:
    """The tweets above one, the tweet, and a page of the replies below it in reading order; each
    with the tweet itself, or None where it was deleted (a placeholder that keeps the tree whole)."""

    ancestors: list[tuple[ThreadNode, Tweet | None]]
    tweet: tuple[ThreadNode, Tweet | None]
    replies: Page[tuple[ThreadNode, Tweet | None]]


class RelationSource(Protocol):
    """A viewer's blocks and mutes (social.relations.Relations)."""

    async def among(self, viewer: int | None, others: Iterable[int]) -> dict[int, Relation]: ...


class MediaDirectory(Protocol):
    """Uploaded media (social.peers.MediaPeer)."""

    async def claim(self, owner_id: int, media_ids: Sequence[int]) -> list[MediaFacts]:
        """owner_id's media, reserved for the tweet being posted, in order; raises media_svc's
        refusal (NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION)."""
        ...


class UserDirectory(Protocol):
    """What tweets need to know of users (social.peers.UsersPeer)."""

    async def user_exists(self, user_id: int) -> bool: ...
    async def resolve_handles(self, handles: Sequence[str]) -> dict[str, int]:
        """Lowercased handle -> user id, for the handles that exist."""
        ...


def mentioned_handles(text: str) -> list[str]:
    """The @handles in a text, lowercased, first occurrence first."""
    return list(dict.fromkeys(m.lower() for m in _MENTION.findall(text)))


def hashtags_of(text: str) -> list[str]:
    """The #tags in a text, lowercased, first occurrence first; all-digit tags don't count."""
    tags = (t.lower()[:TAG_MAX] for t in _HASHTAG.findall(text) if not t.isdigit())
    return list(dict.fromkeys(tags))


def normalize_tag(tag: str) -> str:
    """The tag as tweets carry it: without the #, NFC, lowercased. The contract (the protos) says
    which tags may be asked for; one that no tweet can carry simply has no tweets."""
    return unicodedata.normalize("NFC", tag.removeprefix("#")).lower()


def normalize_text(text: str, *, may_be_empty: bool = False) -> str:
    """NFC-normalized text. The contract (the protos) refuses control characters and more than
    TEXT_MAX code points as sent, and blank text unless the tweet has media (`may_be_empty`); text
    of only invisible characters (joiners, marks: social.text says which count) is refused here;
    the stored form is NFC, which is longer than the text sent in rare cases (composition
    exclusions such as U+0958), and is held to TEXT_MAX too."""
    normalized = unicodedata.normalize("NFC", text)
    if not normalized.strip() and may_be_empty:
        return ""
    if not has_visible_character(normalized):
        raise InvalidArgument.field(
            "text", "must contain a visible character (not only blanks, joiners or marks)", "TEXT_INVISIBLE"
        )
    if len(normalized) > TEXT_MAX:
        raise InvalidArgument.field(
            "text", f"must be at most {TEXT_MAX} characters, got {len(normalized)}", reason="TEXT_TOO_LONG"
        )
    return normalized


def validate_media(media_ids: Sequence[int], alt_texts: Mapping[int, str]) -> dict[int, str]:
    """Alt text only for the tweet's media, NFC, at most ALT_TEXT_MAX characters without control
    characters but line breaks (the contract holds how many media, each once, and the length as
    sent). Returns the alt text of each media."""
    if stray := sorted(set(alt_texts) - set(media_ids)):
        raise InvalidArgument.field("alt_texts", f"media {stray[0]} is not in media_ids")
    texts = {}
    for media_id in media_ids:
        alt = unicodedata.normalize("NFC", alt_texts.get(media_id, "")).strip()
        if len(alt) > ALT_TEXT_MAX:
            raise InvalidArgument.field(
                "alt_texts", f"must be at most {ALT_TEXT_MAX} characters, got {len(alt)} for media {media_id}"
            )
        if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in _ALLOWED_CONTROLS for ch in alt):
            raise InvalidArgument.field("alt_texts", "must not contain control characters")
        texts[media_id] = alt
    return texts


def authors_of(tweet: Tweet) -> tuple[int, ...]:
    """Whose a tweet is, as blocks and mutes see it: its author, and a retweet's original's too."""
    return (tweet.author_id,) if tweet.retweeted is None else (tweet.author_id, tweet.retweeted.author_id)


def media_taken(taken: MediaTaken) -> FailedPrecondition:
    return FailedPrecondition(
        f"media_ids: media {taken.media_id} is attached to another tweet",
        reason="MEDIA_ALREADY_ATTACHED",
        metadata={"field": "media_ids", "media_id": str(taken.media_id)},
    )


class Tweets:
    def __init__(
        self,
        store: TweetStore,
        users: UserDirectory,
        page_tokens: PageTokens,
        media: MediaDirectory,
        relations: RelationSource,
        edit_limits: EditLimits | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._pages = page_tokens
        self._media = media
        self._relations = relations
        self._edit_limits = edit_limits or EditLimits()

    async def _may_interact(self, actor_id: int, author_id: int, action: str) -> None:
        """Refuses an action on an author's tweet when either blocks the other."""
        relations = await self._relations.among(actor_id, [author_id])
        if (refused := interaction_refused(relations.get(author_id, Relation.NONE), action)) is not None:
            raise refused

    async def _visible(self, viewer: int | None, tweets: Sequence[Tweet]) -> list[Tweet]:
        """The tweets a viewer may see (all, anonymously): none of an account that either blocks."""
        if viewer is None:
            return list(tweets)
        relations = await self._relations.among(viewer, [a for t in tweets for a in authors_of(t)])
        return [t for t in tweets if not is_hidden(relations, authors_of(t), muting=False)]

    async def _require_visible_account(self, viewer: int | None, user_id: int) -> None:
        """Refuses a list of an account's tweets to a viewer when either blocks the other."""
        if viewer is not None:
            relations = await self._relations.among(viewer, [user_id])
            refused = interaction_refused(relations.get(user_id, Relation.NONE), "see the tweets of")
            if refused is not None:
                raise refused

    async def create(
        self,
        author_id: int,
        text: str,
        reply_to_tweet_id: int | None,
        request_id: str,
        media_ids: Sequence[int] = (),
        alt_texts: Mapping[int, str] | None = None,
        quote_tweet_id: int | None = None,
    ) -> Tweet:
        text = normalize_text(text, may_be_empty=bool(media_ids))
        alts = validate_media(media_ids, alt_texts or {})
        key = request_id or None
        # A retry of a post that made it: its media is attached, so claiming it again would fail.
        # (The store answers such a retry without media too, in the same transaction.)
        if media_ids and key is not None and (existing := await self._store.by_request_id(author_id, key)):
            return existing
        if reply_to_tweet_id is not None:
            # A reply answers the original of a retweet, if its author lets this one.
            reply_to_tweet_id, parent = await self._acted_on(reply_to_tweet_id, "reply_to_tweet_id")
            await self._may_interact(author_id, parent.author_id, "reply to")
        if quote_tweet_id is not None:
            # A quote quotes the original of a retweet, if its author lets this one.
            quote_tweet_id, quoted = await self._acted_on(quote_tweet_id, "quote_tweet_id")
            await self._may_interact(author_id, quoted.author_id, "quote")
        mentions = await self._mentions(text)
        media = await self._claim(author_id, media_ids, alts)
        new = NewTweet(
            author_id, text, reply_to_tweet_id, key, mentions, tuple(hashtags_of(text)), media, quote_tweet_id
        )
        try:
            return await self._store.create(new)
        except ReplyTargetMissing:
            raise not_found("tweet", str(reply_to_tweet_id), "reply_to_tweet_id") from None
        except QuoteTargetMissing:
            raise not_found("tweet", str(quote_tweet_id), "quote_tweet_id") from None
        except MediaTaken as taken:
            raise media_taken(taken) from None

    async def _mentions(self, text: str) -> tuple[Mention, ...]:
        """The users the text mentions with @handle who exist, in order."""
        handles = mentioned_handles(text)
        found = await self._users.resolve_handles(handles) if handles else {}
        return tuple(Mention(found[h], h) for h in handles if h in found)

    async def _claim(
        self, author_id: int, media_ids: Sequence[int], alts: Mapping[int, str]
    ) -> tuple[TweetMedia, ...]:
        """The author's uploaded media, claimed from media_svc for a tweet, with their alt text."""
        claimed = await self._media.claim(author_id, media_ids) if media_ids else []
        return tuple(
            TweetMedia(
                m.media_id,
                m.content_type,
                m.width,
                m.height,
                m.duration_ms,
                m.url,
                m.thumbnail_url,
                alts[m.media_id],
            )
            for m in claimed
        )

    def _allow_edit(self, actor_id: int, tweet: Editable) -> None:
        """Refuses an edit that is not the author's, of a retweet, past the edit window or past the
        number of edits."""
        limits = self._edit_limits
        if tweet.author_id != actor_id:
            raise PermissionDenied("only its author can edit a tweet", reason="NOT_AUTHOR")
        if tweet.retweet:
            raise FailedPrecondition(
                "a retweet cannot be edited (it shows its original)", reason="RETWEET_NOT_EDITABLE"
            )
        if tweet.age_seconds > limits.window_seconds:
            raise FailedPrecondition(
                f"a tweet can be edited only within {limits.window_seconds:g} seconds of its posting",
                reason="EDIT_WINDOW_CLOSED",
            )
        if tweet.edit_count >= limits.max_edits:
            raise FailedPrecondition(
                f"a tweet can be edited at most {limits.max_edits} times", reason="EDIT_LIMIT_REACHED"
            )

    async def edit(
        self,
        actor_id: int,
        tweet_id: int,
        text: str,
        media_ids: Sequence[int] = (),
        alt_texts: Mapping[int, str] | None = None,
        clear_media: bool = False,
        request_id: str = "",
    ) -> Tweet:
        """The tweet's next version: `text`, and `media_ids` (its current media and/or the
        author's unattached uploads) or, without them, its current media unless `clear_media`.
        Refused (before anything is claimed, and again under the row's lock) by `_allow_edit`."""
        key = request_id or None
        tweet = await self._store.editable(tweet_id)
        if tweet is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        if tweet.author_id == actor_id and key is not None and await self._store.edited_with(tweet_id, key):
            return await self.get(tweet_id)  # the author's retry of an edit that was made
        self._allow_edit(actor_id, tweet)
        alts = validate_media(media_ids, alt_texts or {})
        current = await self.get(tweet_id)
        media: tuple[TweetMedia, ...] | None = None
        attached: tuple[int, ...] = ()
        if media_ids or clear_media:
            kept = {m.media_id: m for m in current.media}
            new_ids = [m for m in media_ids if m not in kept]
            claimed = {m.media_id: m for m in await self._claim(actor_id, new_ids, alts)}
            media = tuple(
                claimed[m] if m in claimed else replace(kept[m], alt_text=alts[m] or kept[m].alt_text)
                for m in media_ids
            )
            attached = tuple(claimed)
        shown = current.media if media is None else media
        text = normalize_text(text, may_be_empty=bool(shown))
        edit = TweetEdit(
            tweet_id,
            actor_id,
            text,
            await self._mentions(text),
            tuple(hashtags_of(text)),
            media,
            attached,
            key,
        )
        try:
            return await self._store.edit(edit, lambda locked: self._allow_edit(actor_id, locked))
        except MediaTaken as taken:
            raise media_taken(taken) from None

    async def history(self, tweet_id: int) -> list[TweetVersion]:
        """A tweet's versions, newest first (a retweet's are its original's)."""
        versions = await self._store.history(await self._original(tweet_id))
        if not versions:
            raise not_found("tweet", str(tweet_id), "tweet_id")  # deleted meanwhile
        return versions

    async def media_tweets(self, media_ids: Sequence[int]) -> dict[int, int]:
        return await self._store.media_tweets(media_ids)

    async def get(self, tweet_id: int, viewer: int | None = None) -> Tweet:
        """The tweet; to a viewer who blocks its author (or a retweet's original's) or is blocked
        by them, refused as interaction_refused says."""
        found = (await self._store.by_ids([tweet_id])).get(tweet_id)
        if found is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        if viewer is not None:
            relations = await self._relations.among(viewer, authors_of(found))
            for author in authors_of(found):
                refused = interaction_refused(relations.get(author, Relation.NONE), "see the tweets of")
                if refused is not None:
                    raise refused
        return found

    async def _live(self, tweet_id: int, field: str = "tweet_id") -> TweetState:
        """NOT_FOUND naming `field` if the tweet is absent or deleted."""
        state = await self._store.state(tweet_id)
        if state is None or state.deleted:
            raise not_found("tweet", str(tweet_id), field)
        return state

    async def delete(self, actor_id: int, tweet_id: int) -> None:
        state = await self._live(tweet_id)
        if state.author_id != actor_id:
            raise PermissionDenied("only its author can delete a tweet", reason="NOT_AUTHOR")
        await self._store.delete(tweet_id, actor_id)

    async def erase_account(self, user_id: int) -> None:
        """A deleted account's part in tweets_svc (social.erasure; at least once, idempotent): its
        tweets and retweets deleted as by their author (each with its event: timelines, streams,
        search, counts and notifications follow), its likes undone as by itself (the counts and
        notifications follow), its bookmarks gone."""
        while authored := await self._store.by_author(user_id, None, ERASE_BATCH):
            for tweet_id in authored:
                with contextlib.suppress(NotFound):  # deleted meanwhile (with its original)
                    await self._store.delete(tweet_id, user_id)
        while liked := await self._store.liked_tweets(user_id, None, ERASE_BATCH):
            for _, tweet_id in liked:
                await self._store.unlike(tweet_id, user_id)
        while bookmarked := await self._store.bookmarked(user_id, None, ERASE_BATCH):
            for _, tweet_id in bookmarked:
                await self._store.unbookmark(tweet_id, user_id)

    async def _acted_on(self, tweet_id: int, field: str = "tweet_id") -> tuple[int, TweetState]:
        """The live tweet a retweet, like, reply, quote or bookmark acts on (a retweet stands for
        its original) and its state, or NOT_FOUND naming `field`."""
        state = await self._live(tweet_id, field)
        if state.retweet_of_tweet_id is not None:
            tweet_id = state.retweet_of_tweet_id
            state = await self._live(tweet_id, field)
        return tweet_id, state

    async def _original(self, tweet_id: int, field: str = "tweet_id") -> int:
        """The tweet a retweet, like, reply or quote acts on: a retweet stands for its original."""
        original, _ = await self._acted_on(tweet_id, field)
        return original

    async def retweet(self, actor_id: int, tweet_id: int) -> Tweet:
        original, state = await self._acted_on(tweet_id)
        await self._may_interact(actor_id, state.author_id, "retweet")
        retweet_id = await self._store.retweet(original, actor_id)
        return await self.get(retweet_id)

    async def unretweet(self, actor_id: int, tweet_id: int) -> Tweet:
        original = await self._original(tweet_id)
        retweet_id = await self._store.retweet_of(original, actor_id)
        if retweet_id is not None:
            # A concurrent retry of this call may delete it first: then there is nothing to undo.
            with contextlib.suppress(NotFound):
                await self._store.delete(retweet_id, actor_id)
        return await self.get(original)

    async def like(self, user_id: int, tweet_id: int) -> Tweet:
        original, state = await self._acted_on(tweet_id)
        await self._may_interact(user_id, state.author_id, "like")
        return await self._toggle_like(self._store.like, user_id, original, tweet_id)

    async def unlike(self, user_id: int, tweet_id: int) -> Tweet:
        return await self._toggle_like(self._store.unlike, user_id, await self._original(tweet_id), tweet_id)

    async def _toggle_like(
        self, change: Callable[[int, int], Awaitable[bool]], user_id: int, original: int, tweet_id: int
    ) -> Tweet:
        if not await change(original, user_id):
            raise not_found("tweet", str(tweet_id), "tweet_id")
        return await self.get(original)

    async def bookmark(self, user_id: int, tweet_id: int) -> None:
        if not await self._store.bookmark(await self._original(tweet_id), user_id):
            raise not_found("tweet", str(tweet_id), "tweet_id")  # deleted meanwhile

    async def unbookmark(self, user_id: int, tweet_id: int) -> None:
        """Works for a deleted tweet too (its bookmarks went with it: nothing to do)."""
        state = await self._store.state(tweet_id)
        if state is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        await self._store.unbookmark(state.retweet_of_tweet_id or tweet_id, user_id)

    async def bookmarks(self, user_id: int, size: int, token: str) -> Page[Tweet]:
        """The user's bookmarks, but for the tweets of accounts it blocks or is blocked by."""
        page = await self._pair_page(
            f"bookmarks:{user_id}", size, token, lambda before, n: self._store.bookmarked(user_id, before, n)
        )
        return await self._shown_page(page.items, page.next_page_token, user_id)

    async def _shown_page(self, ids: Sequence[int], next_page_token: str, viewer: int | None) -> Page[Tweet]:
        """The tweets of a page of ids, hydrated, but for those gone since (deleted between the two
        reads) or hidden from the viewer; the cursor has moved past them anyway."""
        found = await self._store.by_ids(ids)
        return Page(await self._visible(viewer, [found[t] for t in ids if t in found]), next_page_token)

    async def _id_page(
        self,
        scope: str,
        size: int,
        token: str,
        fetch: Callable[[int | None, int], Awaitable[list[int]]],
        viewer: int | None,
    ) -> Page[Tweet]:
        """A page of a list keyed by tweet id: fetch(cursor, limit + 1) gives the ids in order."""
        limit = page_size(size)
        cursor = self._pages.decode(token, scope)
        ids = await fetch(int(cursor) if cursor else None, limit + 1)
        page = self._pages.page(ids, limit, scope, int)
        return await self._shown_page(page.items, page.next_page_token, viewer)

    async def _require_user(self, user_id: int) -> None:
        if not await self._users.user_exists(user_id):
            raise not_found("user", str(user_id), "user_id")

    async def replies(self, tweet_id: int, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        if await self._store.state(tweet_id) is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        return await self._id_page(
            f"replies:{tweet_id}",
            size,
            token,
            lambda after, n: self._store.replies(tweet_id, after, n),
            viewer,
        )

    async def quotes(self, tweet_id: int, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        if await self._store.state(tweet_id) is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        return await self._id_page(
            f"quotes:{tweet_id}",
            size,
            token,
            lambda before, n: self._store.quotes(tweet_id, before, n),
            viewer,
        )

    async def conversation(
        self, tweet_id: int, max_depth: int, size: int, token: str, viewer: int | None = None
    ) -> Conversation:
        """The conversation around a tweet (deleted or not; a retweet's is its original's): see
        TweetStore.thread_up and thread_down. A tweet hidden from the viewer (blocks) is a
        placeholder, as a deleted one is: the tree stays whole."""
        if max_depth < 0:
            raise InvalidArgument.field("max_depth", f"must not be negative, got {max_depth}")
        depth = min(max_depth or REPLY_DEPTH_DEFAULT, REPLY_DEPTH_MAX)
        state = await self._store.state(tweet_id)
        if state is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        tweet_id = state.retweet_of_tweet_id or tweet_id
        up = await self._store.thread_up(tweet_id, ANCESTORS_MAX + 1)
        limit = page_size(size)
        scope = f"conversation:{tweet_id}:{depth}"
        cursor = self._pages.decode(token, scope)
        after = tuple(int(p) for p in cursor.split(".")) if cursor else ()
        down = await self._store.thread_down(tweet_id, up[0].author_id, depth, after, limit + 1)
        page = self._pages.page(down, limit, scope, lambda node: ".".join(map(str, node.path)))
        hydrated = await self._store.by_ids([n.tweet_id for n in (*up, *page.items) if not n.deleted])
        shown = await self._visible(viewer, list(hydrated.values()))
        found = {t.tweet_id: t for t in shown}

        def placed(node: ThreadNode) -> tuple[ThreadNode, Tweet | None]:
            return node, found.get(node.tweet_id)  # None: deleted (maybe just now)

        return Conversation(
            [placed(n) for n in reversed(up[1:])],
            placed(up[0]),
            Page([placed(n) for n in page.items], page.next_page_token),
        )

    async def mentions(self, user_id: int, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        await self._require_user(user_id)
        return await self._id_page(
            f"mentions:{user_id}",
            size,
            token,
            lambda before, n: self._store.mentioning(user_id, before, None, n),
            viewer,
        )

    async def hashtag(self, tag: str, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        tag = normalize_tag(tag)
        return await self._id_page(
            f"hashtag:{tag}", size, token, lambda before, n: self._store.tagged(tag, before, n), viewer
        )

    async def global_timeline(self, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        return await self._id_page(
            "global", size, token, lambda before, n: self._store.public(before, None, n), viewer
        )

    async def _pair_page(
        self,
        scope: str,
        size: int,
        token: str,
        fetch: Callable[[int | None, int], Awaitable[list[tuple[int, int]]]],
    ) -> Page[int]:
        """A page of a list kept in the order of its own rows (likes, bookmarks): fetch(cursor,
        limit + 1) gives (row id, other id) rows below the cursor; the page holds the other ids."""
        limit = page_size(size)
        cursor = self._pages.decode(token, scope)
        rows = await fetch(int(cursor) if cursor else None, limit + 1)
        page = self._pages.page(rows, limit, scope, lambda row: row[0])
        return Page([other for _, other in page.items], page.next_page_token)

    async def liked(self, user_id: int, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        await self._require_user(user_id)
        page = await self._pair_page(
            f"liked:{user_id}", size, token, lambda before, n: self._store.liked_tweets(user_id, before, n)
        )
        return await self._shown_page(page.items, page.next_page_token, viewer)

    async def liking_users(
        self, tweet_id: int, size: int, token: str, viewer: int | None = None
    ) -> Page[int]:
        """Who liked the tweet, but for the accounts a signed-in viewer blocks or is blocked by."""
        await self._live(tweet_id)
        page = await self._pair_page(
            f"likes:{tweet_id}", size, token, lambda before, n: self._store.liking_users(tweet_id, before, n)
        )
        relations = await self._relations.among(viewer, page.items)
        return Page(
            [u for u in page.items if not is_hidden(relations, [u], muting=False)], page.next_page_token
        )

    async def search(self, query: str, size: int, token: str, viewer: int | None = None) -> Page[Tweet]:
        """Best match first, but for what a signed-in viewer may not see. A query with no
        searchable words (only punctuation or words too common to index, like "the") matches nothing."""
        query = unicodedata.normalize("NFC", query).strip()
        limit = page_size(size)
        scope = f"search:{query}"
        cursor = self._pages.decode(token, scope)
        if not await self._store.searchable(query):
            return Page([], "")
        after = None
        if cursor:
            rank, _, tweet_id = cursor.partition(":")
            after = (float(rank), int(tweet_id))
        rows = await self._store.search(query, after, limit + 1)
        page = self._pages.page(rows, limit, scope, lambda row: f"{row[0]!r}:{row[1]}")
        return await self._shown_page([t for _, t in page.items], page.next_page_token, viewer)

    async def batch_get(self, tweet_ids: Sequence[int]) -> list[Tweet]:
        found = await self._store.by_ids(tweet_ids)
        return [found[t] for t in dict.fromkeys(tweet_ids) if t in found]

    async def list_by_user(
        self, user_id: int, size: int, token: str, viewer: int | None = None
    ) -> Page[Tweet]:
        """The account's tweets, newest first; refused to a viewer when either blocks the other, and
        without its retweets of the tweets the viewer may not see."""
        await self._require_user(user_id)
        await self._require_visible_account(viewer, user_id)
        return await self._id_page(
            f"user-tweets:{user_id}",
            size,
            token,
            # The author reads their own tweets from the primary (a tweet just posted is there);
            # anyone else may be shown them a moment late.
            lambda before, n: self._store.by_author(user_id, before, n, lag_ok=viewer != user_id),
            viewer,
        )

    async def ids_by_authors(
        self, author_ids: Sequence[int], before: int | None, after: int | None, limit: int
    ) -> list[TweetRef]:
        return await self._store.ids_by_authors(author_ids, before, after, limit)

    async def mention_ids(self, user_id: int, before: int | None, after: int | None, limit: int) -> list[int]:
        return await self._store.mentioning(user_id, before, after, limit)

    async def tweet_counts(self, author_ids: Sequence[int]) -> dict[int, int]:
        return await self._store.tweet_counts(author_ids)
