"""Test rigs that run real mail software: here, Debian 13's Postfix 3.10 with libtlsrpt."""
