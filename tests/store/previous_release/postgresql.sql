-- The decision store's schema as the release before migrations created it on postgresql
-- (fraudops/store/models.py at a47017f, Base.metadata.create_all; tests/store/test_migrations.py).
CREATE TABLE decisions (
	transaction_id VARCHAR(128) NOT NULL,
	account_id VARCHAR(128) NOT NULL,
	event_time TIMESTAMP WITH TIME ZONE NOT NULL,
	amount FLOAT NOT NULL,
	fraud_probability FLOAT NOT NULL,
	anomaly_score FLOAT NOT NULL,
	decision VARCHAR(16) NOT NULL,
	reason_codes TEXT NOT NULL,
	model_version VARCHAR(256) NOT NULL,
	transaction_json TEXT NOT NULL,
	scored_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (transaction_id)
);

CREATE INDEX ix_decisions_event_time ON decisions (event_time);

CREATE INDEX ix_decisions_decision ON decisions (decision);

CREATE INDEX ix_decisions_account_id ON decisions (account_id);

CREATE TABLE decision_sources (
	transaction_id VARCHAR(128) NOT NULL,
	topic VARCHAR(255) NOT NULL,
	partition INTEGER NOT NULL,
	record_offset BIGINT NOT NULL,
	PRIMARY KEY (transaction_id)
);

CREATE TABLE alerts (
	transaction_id VARCHAR(128) NOT NULL,
	account_id VARCHAR(128) NOT NULL,
	event_time TIMESTAMP WITH TIME ZONE NOT NULL,
	amount FLOAT NOT NULL,
	decision VARCHAR(16) NOT NULL,
	fraud_probability FLOAT NOT NULL,
	anomaly_score FLOAT NOT NULL,
	reason_codes TEXT NOT NULL,
	status VARCHAR(32) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (transaction_id)
);

CREATE INDEX ix_alerts_account_id ON alerts (account_id);

CREATE INDEX ix_alerts_created_at ON alerts (created_at);

CREATE INDEX ix_alerts_risk ON alerts (fraud_probability, transaction_id);

CREATE INDEX ix_alerts_queue ON alerts (status, fraud_probability, transaction_id);

CREATE INDEX ix_alerts_status ON alerts (status);

CREATE TABLE notifications (
	dedupe_key VARCHAR(256) NOT NULL,
	transaction_id VARCHAR(128) NOT NULL,
	account_id VARCHAR(128) NOT NULL,
	channel VARCHAR(32) NOT NULL,
	event_time TIMESTAMP WITH TIME ZONE NOT NULL,
	status VARCHAR(32) NOT NULL,
	payload TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	last_error TEXT,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	sent_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (dedupe_key)
);

CREATE INDEX ix_notifications_status ON notifications (status);

CREATE INDEX ix_notifications_account_time ON notifications (account_id, event_time);

CREATE INDEX ix_notifications_transaction_id ON notifications (transaction_id);

CREATE TABLE labels (
	transaction_id VARCHAR(128) NOT NULL,
	label INTEGER NOT NULL,
	source VARCHAR(64) NOT NULL,
	analyst VARCHAR(128),
	note TEXT,
	labelled_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (transaction_id)
);

CREATE TABLE label_history (
	id BIGSERIAL NOT NULL,
	transaction_id VARCHAR(128) NOT NULL,
	label INTEGER NOT NULL,
	previous_label INTEGER,
	outcome VARCHAR(16) NOT NULL,
	source VARCHAR(64) NOT NULL,
	analyst VARCHAR(128),
	note TEXT,
	labelled_at TIMESTAMP WITH TIME ZONE NOT NULL,
	recorded_at TIMESTAMP WITH TIME ZONE NOT NULL,
	published_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ux_label_history_event ON label_history (transaction_id, labelled_at, label, source);

CREATE TABLE stream_checkpoints (
	group_id VARCHAR(255) NOT NULL,
	topic VARCHAR(255) NOT NULL,
	partition INTEGER NOT NULL,
	next_offset BIGINT NOT NULL,
	snapshot_offset BIGINT,
	snapshot BYTEA,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (group_id, topic, partition)
);

CREATE TABLE stream_state (
	group_id VARCHAR(255) NOT NULL,
	topic VARCHAR(255) NOT NULL,
	partition INTEGER NOT NULL,
	kind VARCHAR(64) NOT NULL,
	entity VARCHAR(128) NOT NULL,
	value BYTEA NOT NULL,
	PRIMARY KEY (group_id, topic, partition, kind, entity)
);

