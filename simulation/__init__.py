"""Simulators: generated worlds of customers and events (`generate`, with `apply_treatment`, what a
retention contact does to them) and BG/NBD cohorts (`bgnbd`). Not feature definitions: they may
use `features`, which never imports them."""
