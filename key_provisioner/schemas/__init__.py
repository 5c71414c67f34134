"""Request and response bodies: ``XBase`` holds shared fields, ``XCreate`` what a
client sends, ``XPublic`` what the API returns. Secrets appear only in the
one-time ``LockEnrolled`` and ``KeyIssued`` bodies."""
