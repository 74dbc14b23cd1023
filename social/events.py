"""The event streams between services: Redis Streams written through the owners' outboxes
(meshkit.outbox) and consumed by fanout_svc (tweets, follows) and notifications_svc (all three);
the payloads are the protos' TweetEvent, FollowEvent and LikeEvent."""

TWEETS_STREAM = "events:tweets"
FOLLOWS_STREAM = "events:follows"
LIKES_STREAM = "events:likes"
