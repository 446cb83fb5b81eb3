"""The stream consumer unit: `fraudops consume`.

Reads `transactions` (and analyst `labels`) from Kafka, keeps per-account feature state, scores
micro-batches on the KServe predictor, writes decisions/alerts to Kafka and the decision store,
and sends de-duplicated, rate-limited notifications. See `consumers.state` for the delivery and
state-consistency design.
"""
