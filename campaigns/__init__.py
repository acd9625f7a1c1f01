"""Retention campaigns: whom to contact, a randomised control group, recorded outcomes, and
what the contacts achieved. Built on `features` and `scoring`; `training`, `serving` and the
`cli` use it."""
