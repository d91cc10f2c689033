"""The local stack (Kafka, schema registry, ClickHouse over chDB): a dev tool production code never imports."""
