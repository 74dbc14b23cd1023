"""The event streams between services: Redis Streams written through the owners' outboxes
(meshkit.outbox) and consumed by fanout_svc; the payloads are the protos' TweetEvent and
FollowEvent."""

TWEETS_STREAM = "events:tweets"
FOLLOWS_STREAM = "events:follows"
