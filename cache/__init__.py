"""Redis: the embedded or configured server, the key layout, versioned publishing and reading."""
