"""Watching the champion: drift of its inputs and scores against its training reference, and
realised accuracy once the labels arrive (`churn monitor`). Built on `features`, `scoring` and
`training`; only the `cli` uses it. It writes its results to the product's store, where the
service reads them."""
