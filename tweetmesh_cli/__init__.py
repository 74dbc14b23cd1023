"""`tweetmesh`: the command line for people (sign up, post, read and watch timelines)."""
