"""DECNET: the host-local event bus and its command line."""
