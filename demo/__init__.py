"""`make demo`: the deploy kit's monitoring stack on loopback, without Docker (README, "make demo")."""
