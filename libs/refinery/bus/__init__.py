"""Kafka helpers: durable producer with spool, topic set-up."""
