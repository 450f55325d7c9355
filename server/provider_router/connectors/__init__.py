"""Provider connectors: one module per wire protocol; `factory.create_connector` builds them."""
