"""The response cache: exact-match answers keyed by a canonical hash of the request."""
