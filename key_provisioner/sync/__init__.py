"""The key server's end of the locks' outbound sync channel (see ``elock_common.lock_sync``)."""
