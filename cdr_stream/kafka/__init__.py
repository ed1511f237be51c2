"""The Kafka side: the transactional writer, the stored offsets, the topics, read-back and presence."""
