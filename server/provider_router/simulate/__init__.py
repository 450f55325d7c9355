"""The what-if simulator: replay recorded requests through the routing layer of a config."""
