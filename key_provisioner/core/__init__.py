"""Settings, errors and cryptography shared by every layer of the key server."""
