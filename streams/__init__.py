"""The wire: contracts, codec, topics, Kafka settings and the clients (the base install)."""
