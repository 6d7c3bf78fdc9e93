-- Replicas share the tenants through Postgres (docs/architecture.md,
-- "Replicas"). Replicas of one MQTT_INSTANCE_ID register here and hold one
-- lease per connection they run; an expired lease may be taken by another
-- replica of the same instance. Times are the database's clock only.

CREATE TABLE mqtt_replicas (
    replica_id   text PRIMARY KEY,
    instance_id  text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    -- The kernel's boot ID: with the host name and the process ID, a
    -- restarted process tells a replica of its own machine that is dead.
    boot_id      text NOT NULL DEFAULT '',
    version      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

CREATE INDEX mqtt_replicas_by_instance ON mqtt_replicas (instance_id, expires_at);

-- No foreign key to mqtt_connections: a lease of a deleted row is released
-- by its owner once the actor has closed the connection.
CREATE TABLE mqtt_connection_leases (
    instance_id   text NOT NULL,
    connection_id bigint NOT NULL,
    owner         text NOT NULL,
    -- Grows with every change of owner: a fencing token.
    epoch         bigint NOT NULL DEFAULT 1,
    expires_at    timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, connection_id)
);

CREATE INDEX mqtt_connection_leases_by_owner ON mqtt_connection_leases (owner);
