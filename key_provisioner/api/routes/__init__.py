"""One router per resource; each route checks the role and calls a service."""
