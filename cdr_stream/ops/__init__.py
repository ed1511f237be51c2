"""Operations: metrics, health, the HTTP endpoints, logs, progress lines, status and the topic checker."""
