"""What starts pipelines on a server: git mirrors, the poller and webhooks."""
