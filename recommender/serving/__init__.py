"""What the service publishes and serves: the lists and the one serving policy."""
