"""The data contract (ids, event types, schemas), loading and validation, input adapters and the demo shop."""
