"""Small apps the container tests start: well-behaved, crashing, hanging, sneaky, blocking."""
