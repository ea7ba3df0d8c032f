"""The warehouse sink: Kafka topics into ClickHouse tables, idempotently, in batches."""
