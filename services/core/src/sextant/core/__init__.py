"""What every Sextant part needs: settings sections, Kafka and ClickHouse adapters, the config
plane follower, health, metrics and logging. Nothing part-specific lives here."""
