"""RACS (Remote APDU Call Secure): secure elements served over mutually authenticated TLS.

See docs/racs.md for the protocol, the configuration files and the modules.
"""
