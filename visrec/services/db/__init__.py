"""Database and cache plumbing: vector indexes, prepared statements, compiled SQL, pooled queries."""
