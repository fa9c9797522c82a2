-- Run once by the clickhouse/clickhouse-server image on an empty data volume
-- (docker-compose.yml mounts it into /docker-entrypoint-initdb.d/).
CREATE DATABASE IF NOT EXISTS vitals;
