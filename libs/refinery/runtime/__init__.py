"""The service kernel (`kernel`), typed subscriptions (`subscriptions`) and an in-memory bus for tests."""
