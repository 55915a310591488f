"""Real servers for the tests, each started on loopback and stopped by the test: DNS, SMTP and
HTTPS servers of our own, and real MTAs (Debian's Postfix 3.7 and Exim 4.96 on this machine,
Debian 13's Postfix 3.10 with libtlsrpt chrooted in a cached trixie root)."""
