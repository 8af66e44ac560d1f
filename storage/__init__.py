"""Redis access: connection, keys, subscriptions, events and the embedded Redis launcher."""
