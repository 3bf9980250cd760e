"""The store: transactional operations over durable_celery's models that the engine needs."""

__all__: list[str] = []
