"""The event streams between services: Redis Streams written through the owners' outboxes
(meshkit.outbox) and consumed by fanout_svc (tweets, follows), notifications_svc (tweets, follows,
likes, accounts) and the erasers of a deleted account (accounts: users_svc, tweets_svc,
notifications_svc); the payloads are the protos' TweetEvent, FollowEvent, LikeEvent and
AccountEvent."""

TWEETS_STREAM = "events:tweets"
FOLLOWS_STREAM = "events:follows"
LIKES_STREAM = "events:likes"
ACCOUNTS_STREAM = "events:accounts"
