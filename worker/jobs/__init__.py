"""The job contract: payloads, email rules, stamps, serialization and the errors results name."""
